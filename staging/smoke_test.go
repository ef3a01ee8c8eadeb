package staging

import (
	"errors"
	"io"
	"os"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

func TestSmoke(t *testing.T) {
	tpm, _ := tpmext.NewSoftware(tpmext.SHA1, tpmext.SHA256)
	l, err := template.NewLayout(tpm.Banks(), template.HashSHA256, template.LittleEndian)
	require.NoError(t, err)
	q, err := measlist.New(measlist.Config{Layout: l, TPM: tpm, Kexec: true})
	require.NoError(t, err)
	for i := 0; i < 100; i++ {
		ev, _ := template.NewFileEvent("/bin/f"+string(rune('a'+i%26))+string(rune('a'+i/26)), &template.File{Content: []byte{byte(i)}}, template.HashSHA256, nil)
		e, err := l.NewEntry(template.Builtin("ima-ng"), 10, ev)
		require.NoError(t, err)
		require.NoError(t, q.Add(e))
	}
	s, err := New(Config{Queue: q, Staging: true})
	require.NoError(t, err)
	for _, d := range s.ReadDir() {
		t.Logf("%v %s -> %s", d.Mode, d.Name, d.Target)
	}
	root := s.As(Root(1))
	full, err := ReadFile(root, "binary_runtime_measurements")
	require.NoError(t, err)
	// Read with a 1-byte buffer gives the same bytes.
	f, err := root.OpenFile("binary_runtime_measurements", os.O_RDONLY)
	require.NoError(t, err)
	var got []byte
	b := make([]byte, 1)
	for {
		n, err := f.Read(b)
		got = append(got, b[:n]...)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	require.Equal(t, full, got)
	// A second opener for write is refused while a reader is open.
	_, err = s.As(Root(2)).OpenFile("binary_runtime_measurements_staged", os.O_WRONLY)
	require.ErrorIs(t, err, syscall.EBUSY)
	require.NoError(t, f.Close())

	w, err := root.OpenFile("binary_runtime_measurements_staged", os.O_RDWR)
	require.NoError(t, err)
	n, err := w.Write([]byte("A\n"))
	require.NoError(t, err)
	require.Equal(t, 2, n)
	staged, err := io.ReadAll(w)
	require.NoError(t, err)
	require.Equal(t, full, staged)
	_, err = w.Write([]byte("A\n"))
	require.ErrorIs(t, err, syscall.EEXIST)
	var pe *os.PathError
	require.True(t, errors.As(err, &pe))
	_, err = w.Write([]byte("D\n"))
	require.NoError(t, err)
	_, err = w.Write([]byte("5\n"))
	require.ErrorIs(t, err, syscall.EINVAL)
	require.NoError(t, w.Close())
	cnt, err := ReadFile(root, "runtime_measurements_count")
	require.NoError(t, err)
	require.Equal(t, "0\n", string(cnt))
	require.ErrorIs(t, WriteFile(root, "binary_runtime_measurements", []byte("1\n")), syscall.ENOENT)
	_, err = s.As(Task{TID: 9, UID: 1000, GID: 1000}).OpenFile("binary_runtime_measurements", os.O_RDONLY)
	require.ErrorIs(t, err, syscall.EACCES)
}
