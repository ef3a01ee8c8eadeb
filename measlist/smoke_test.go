package measlist

import (
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

func smokeQueue(t *testing.T, cfg Config) (*Queue, *tpmext.Software) {
	tpm, err := tpmext.NewSoftware(tpmext.SHA1, tpmext.SHA256)
	require.NoError(t, err)
	l, err := template.NewLayout(tpm.Banks(), template.HashSHA256, template.LittleEndian)
	require.NoError(t, err)
	cfg.Layout, cfg.TPM = l, tpm
	q, err := New(cfg)
	require.NoError(t, err)
	return q, tpm
}

func smokeEntry(t *testing.T, q *Queue, path, content string) *template.Entry {
	ev, err := template.NewFileEvent(path, &template.File{Content: []byte(content)}, template.HashSHA256, nil)
	require.NoError(t, err)
	e, err := q.Layout().NewEntry(template.Builtin("ima-ng"), 10, ev)
	require.NoError(t, err)
	return e
}

func TestSmoke(t *testing.T) {
	q, _ := smokeQueue(t, Config{Kexec: true})
	for i := 0; i < 5; i++ {
		require.NoError(t, q.Add(smokeEntry(t, q, "/f", string(rune('a'+i)))))
	}
	require.ErrorIs(t, q.Add(smokeEntry(t, q, "/f", "a")), syscall.EEXIST)
	require.NoError(t, q.Stage())
	require.ErrorIs(t, q.Stage(), syscall.EEXIST)
	require.EqualValues(t, 5, q.NumRecords(BinaryStaged))
	require.EqualValues(t, 0, q.NumRecords(Binary))
	require.NoError(t, q.Add(smokeEntry(t, q, "/g", "x")))
	n, err := q.DeleteStaged()
	require.NoError(t, err)
	require.Equal(t, 5, n)
	require.ErrorIs(t, q.Add(smokeEntry(t, q, "/f", "a")), syscall.EEXIST, "digests of deleted records stay in the hash table")
	require.NoError(t, q.Add(smokeEntry(t, q, "/g", "y")))
	require.ErrorIs(t, q.DeletePartial(3), syscall.ENOENT)
	require.NoError(t, q.DeletePartial(1))
	require.Len(t, q.Entries(Current), 1)
	require.NoError(t, q.Stage())
	q.Suspend()
	seg, err := q.KexecSegmentSize(KexecOptions{})
	require.NoError(t, err)
	dump, err := q.DumpKexec(seg)
	require.NoError(t, err)
	q2, _ := smokeQueue(t, Config{Kexec: true})
	res, err := q2.RestoreKexec(dump)
	require.NoError(t, err)
	require.Equal(t, 1, res.Restored)
	require.EqualValues(t, 1, q2.NumRecords(BinaryFull))
}
