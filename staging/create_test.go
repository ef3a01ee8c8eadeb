package staging

import (
	"os"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/stretchr/testify/require"
)

// TestOpenMissingWithCreate: a shell redirection to a file the kernel did
// not create (the _staged files without CONFIG_IMA_STAGING) opens with
// O_CREAT, and fs/namei.c:lookup_open() answers EACCES because securityfs
// directories have no ->create; without O_CREAT the answer is ENOENT.
func TestOpenMissingWithCreate(t *testing.T) {
	l, err := template.NewLayout(nil, template.HashSHA1, template.LittleEndian)
	require.NoError(t, err)
	q, err := measlist.New(measlist.Config{Layout: l})
	require.NoError(t, err)
	s, err := New(Config{Queue: q, Staging: false})
	require.NoError(t, err)
	root := s.As(Root(1))
	err = WriteFile(root, BinaryRuntimeMeasurementsStaged, []byte("A\n"))
	require.ErrorIs(t, err, syscall.EACCES)
	_, err = root.OpenFile(BinaryRuntimeMeasurementsStaged, os.O_WRONLY)
	require.ErrorIs(t, err, syscall.ENOENT)
	_, err = root.OpenFile("binary_runtime_measurements_sha1", os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	require.ErrorIs(t, err, syscall.EEXIST)
}
