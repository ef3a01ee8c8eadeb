package measlist

import (
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

func TestKmallocSize(t *testing.T) {
	for n, want := range map[int]int{0: 0, 1: 8, 8: 8, 9: 16, 33: 64, 65: 96, 97: 128, 129: 192, 193: 256, 257: 512, 4097: 8192, 8193: 12288} {
		require.Equal(t, want, KmallocSize(n), "KmallocSize(%d)", n)
	}
}

func TestRecordFootprint(t *testing.T) {
	l, err := template.NewLayout([]tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, template.HashSHA256, template.LittleEndian)
	require.NoError(t, err)
	ev, err := template.NewFileEvent("/usr/bin/example-1234", &template.File{Content: []byte("x")}, template.HashSHA256, nil)
	require.NoError(t, err)
	e, err := l.NewEntry(template.Builtin("ima-ng"), 10, ev)
	require.NoError(t, err)
	// d-ng: "sha256:\0" + 32 = 40 -> 64; n-ng: 21 chars + NUL = 22 -> 32;
	// queue entry 40 -> 64; template entry 32 + 2*16 = 64 -> 64;
	// digests 2 * 66 = 132 -> 192.
	require.Len(t, e.Fields[0], 40)
	require.Len(t, e.Fields[1], 22)
	live, retained := RecordFootprint(e, l.NumSlots())
	require.Equal(t, 64+64+192, retained)
	require.Equal(t, retained+64+32, live)
}

func TestKernelMemoryAcrossDeletions(t *testing.T) {
	for _, flush := range []bool{false, true} {
		tpm, _ := tpmext.NewSoftware(tpmext.SHA1, tpmext.SHA256)
		l, _ := template.NewLayout(tpm.Banks(), template.HashSHA256, template.LittleEndian)
		q, err := New(Config{Layout: l, TPM: tpm, FlushHtable: flush})
		require.NoError(t, err)
		var live, retained int64
		add := func(i int) {
			ev, _ := template.NewFileEvent("/f", &template.File{Content: []byte{byte(i)}}, template.HashSHA256, nil)
			e, _ := l.NewEntry(template.Builtin("ima-ng"), 10, ev)
			lv, rt := RecordFootprint(e, l.NumSlots())
			live += int64(lv)
			retained += int64(rt)
			require.NoError(t, q.Add(e))
		}
		for i := 0; i < 10; i++ {
			add(i)
		}
		require.Equal(t, KernelMemory{Lists: live, Htable: HtableBytes, WithoutStaging: live + HtableBytes}, q.KernelMemory())
		require.NoError(t, q.Stage())
		_, err = q.DeleteStaged()
		require.NoError(t, err)
		want := KernelMemory{Retained: retained, Htable: HtableBytes, WithoutStaging: live + HtableBytes}
		if flush {
			want.Retained = 0
		}
		require.Equal(t, want, q.KernelMemory(), "flush=%v", flush)
	}
}
