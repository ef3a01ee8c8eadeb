package staging

import (
	"io/fs"
	"slices"
	"sort"
	"syscall"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// TestFileSet checks the directory of docs/SPEC.md §3.1 for several bank sets, with
// and without CONFIG_IMA_STAGING: one pair of list files per bank (plus
// SHA-1 when no bank is SHA-1; never the extra ima_hash slot), _tpm_alg_<hex>
// for a bank the kernel cannot map, the _staged twins and their links only
// with Staging, every list file 0660 and writable whatever Staging says
// (docs/SPEC.md Q1), the counters 0440 and read-only, and the links 0444 as
// security/inode.c:securityfs_create_symlink() makes them (lr--r--r--).
func TestFileSet(t *testing.T) {
	tests := []struct {
		name     string
		banks    []tpmext.Algorithm // nil: no TPM
		hash     template.HashAlgo
		suffixes []string // list-file suffixes in creation order
	}{
		{"sha1", []tpmext.Algorithm{tpmext.SHA1}, template.HashSHA1, []string{"sha1"}},
		{"sha1 with ima_hash=sha256 (extra slot has no file)", []tpmext.Algorithm{tpmext.SHA1}, template.HashSHA256, []string{"sha1"}},
		{"sha1+sha256", []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, template.HashSHA256, []string{"sha1", "sha256"}},
		{"sha256 only: the SHA-1 file still exists", []tpmext.Algorithm{tpmext.SHA256}, template.HashSHA256, []string{"sha256", "sha1"}},
		{"unmapped sha3-256 bank", []tpmext.Algorithm{tpmext.SHA256, tpmext.SHA3_256}, template.HashSHA256, []string{"sha256", "tpm_alg_27", "sha1"}},
		{"four banks", []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256, tpmext.SHA384, tpmext.SHA512}, template.HashSHA256, []string{"sha1", "sha256", "sha384", "sha512"}},
		{"no TPM", nil, template.HashSHA256, []string{"sha1"}},
	}
	for _, tc := range tests {
		for _, staging := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{false: "", true: "/staging"}[staging], func(t *testing.T) {
				f := newFixture(t, fixtureConfig{Banks: tc.banks, Hash: tc.hash, Staging: staging})
				var suffixes []string
				for _, lf := range f.layout.ListFiles() {
					suffixes = append(suffixes, lf.Suffix)
				}
				require.Equal(t, tc.suffixes, suffixes, "list files in creation order")

				want := map[string]DirEntry{}
				add := func(name string, mode fs.FileMode, target string, writable bool) {
					want[name] = DirEntry{Name: name, Mode: mode, Target: target, Writable: writable}
				}
				for _, sfx := range tc.suffixes {
					add("ascii_runtime_measurements_"+sfx, 0o660, "", true)
					add("binary_runtime_measurements_"+sfx, 0o660, "", true)
					if staging {
						add("ascii_runtime_measurements_"+sfx+"_staged", 0o660, "", true)
						add("binary_runtime_measurements_"+sfx+"_staged", 0o660, "", true)
					}
				}
				add("ascii_runtime_measurements", fs.ModeSymlink|0o444, "ascii_runtime_measurements_sha1", false)
				add("binary_runtime_measurements", fs.ModeSymlink|0o444, "binary_runtime_measurements_sha1", false)
				if staging {
					add("ascii_runtime_measurements_staged", fs.ModeSymlink|0o444, "ascii_runtime_measurements_sha1_staged", false)
					add("binary_runtime_measurements_staged", fs.ModeSymlink|0o444, "binary_runtime_measurements_sha1_staged", false)
				}
				add("runtime_measurements_count", 0o440, "", false)
				add("violations", 0o440, "", false)

				got := f.s.ReadDir()
				require.True(t, sort.SliceIsSorted(got, func(i, j int) bool { return got[i].Name < got[j].Name }))
				wantList := make([]DirEntry, 0, len(want))
				for _, e := range want {
					wantList = append(wantList, e)
				}
				sort.Slice(wantList, func(i, j int) bool { return wantList[i].Name < wantList[j].Name })
				require.Equal(t, wantList, got)

				// Every symlink resolves to an existing list file, and
				// every name opens (as root, for reading).
				for _, e := range got {
					if e.Mode&fs.ModeSymlink != 0 {
						require.Contains(t, want, e.Target)
					}
					sf, err := f.s.Open(Root(1), e.Name, rdonly)
					require.NoError(t, err, e.Name)
					require.NoError(t, sf.Close())
				}
				// The _staged names do not exist without Staging.
				if !staging {
					_, err := f.s.Open(Root(1), BinaryRuntimeMeasurementsStaged, rdonly)
					requireErrno(t, err, syscall.ENOENT, "open")
					_, err = f.s.Open(Root(1), "ascii_runtime_measurements_sha1_staged", rdonly)
					requireErrno(t, err, syscall.ENOENT, "open")
				}
				// The extra ima_hash slot never gets a file.
				if idx := f.layout.HashIndex(); idx >= f.layout.NumBanks() && f.layout.SHA1Index() != idx {
					_, err := f.s.Open(Root(1), "binary_runtime_measurements_"+tc.hash.String(), rdonly)
					requireErrno(t, err, syscall.ENOENT, "open")
				}
			})
		}
	}
}

// TestFileSetFilesShowTheirSlot checks that each per-bank file renders the
// digest column of its own slot (the inode's i_private), the links that of
// SHA-1, and the _tpm_alg_ file the padded SHA-1 digest of an unmapped bank.
func TestFileSetFilesShowTheirSlot(t *testing.T) {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA256, tpmext.SHA3_256}, Staging: true, Records: 3})
	for _, lf := range f.layout.ListFiles() {
		for _, ascii := range []bool{false, true} {
			base := BinaryRuntimeMeasurements
			if ascii {
				base = ASCIIRuntimeMeasurements
			}
			got, err := ReadFile(f.root(), base+"_"+lf.Suffix)
			require.NoError(t, err)
			require.Equal(t, f.render(0, lf.Slot, ascii), got, "%s_%s", base, lf.Suffix)
		}
	}
	link, err := ReadFile(f.root(), BinaryRuntimeMeasurements)
	require.NoError(t, err)
	require.Equal(t, f.render(0, f.layout.SHA1Index(), false), link)

	// The unmapped bank's column is the SHA-1 template digest padded with
	// zeros to the bank's 32 bytes.
	unmapped := slices.IndexFunc(f.layout.ListFiles(), func(lf template.ListFile) bool { return lf.Suffix == "tpm_alg_27" })
	require.GreaterOrEqual(t, unmapped, 0)
	e := f.q.Entries(0)[0]
	slot := f.layout.ListFiles()[unmapped].Slot
	d := e.Digests[slot].Value
	require.Len(t, d, 32)
	require.Equal(t, e.Digests[f.layout.SHA1Index()].Value, d[:20])
	require.Equal(t, make([]byte, 12), d[20:])
}

// TestNDeleteNeedsStaging checks the alternative reading of docs/SPEC.md Q1 that
// Config.NDeleteNeedsStaging models: without CONFIG_IMA_STAGING the
// original list files are 0440 with no write operation, as before patch 11;
// with it they are 0660 and writable, as in the code.
func TestNDeleteNeedsStaging(t *testing.T) {
	t.Run("staging off", func(t *testing.T) {
		f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, NDeleteNeedsStaging: true, Records: 3})
		for _, e := range f.s.ReadDir() {
			if e.Mode&fs.ModeSymlink == 0 {
				require.Equal(t, fs.FileMode(0o440), e.Mode, e.Name)
				require.False(t, e.Writable, e.Name)
			}
		}
		// uid 0 without CAP_DAC_OVERRIDE: the mode refuses the write open.
		_, err := f.s.Open(Task{TID: 2, CapSysAdmin: true}, BinaryRuntimeMeasurements, wronly)
		requireErrno(t, err, syscall.EACCES, "open")
		// Full root passes the DAC check, and the write has no handler.
		err = WriteFile(f.root(), BinaryRuntimeMeasurements, []byte("1\n"))
		requireErrno(t, err, syscall.EINVAL, "write")
		require.Equal(t, "3\n", f.counter(RuntimeMeasurementsCount))
	})
	t.Run("staging on", func(t *testing.T) {
		f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1}, NDeleteNeedsStaging: true, Staging: true, Records: 3})
		require.NoError(t, WriteFile(f.root(), BinaryRuntimeMeasurements, []byte("1\n")))
		require.Equal(t, "2\n", f.counter(RuntimeMeasurementsCount))
	})
}

// TestFindingQ1NDeleteWithoutStaging shows docs/SPEC.md Q1 as the v7 code decides
// it: with CONFIG_IMA_STAGING=n (and the default Config, which models the
// code) the original list files are still 0660 with a write operation, and
// root deletes N records through them.
func TestFindingQ1NDeleteWithoutStaging(t *testing.T) {
	f := newFixture(t, fixtureConfig{Banks: []tpmext.Algorithm{tpmext.SHA1, tpmext.SHA256}, Records: 5})
	for _, e := range f.s.ReadDir() {
		if e.Mode&fs.ModeSymlink == 0 && e.Name != RuntimeMeasurementsCount && e.Name != Violations {
			require.Equal(t, fs.FileMode(0o660), e.Mode, e.Name)
			require.True(t, e.Writable, e.Name)
		}
	}
	require.NoError(t, WriteFile(f.root(), BinaryRuntimeMeasurements, []byte("2\n")))
	require.Equal(t, "3\n", f.counter(RuntimeMeasurementsCount))
	require.NoError(t, WriteFile(f.root(), "ascii_runtime_measurements_sha256", []byte("3\n")))
	require.Equal(t, "0\n", f.counter(RuntimeMeasurementsCount))
}
