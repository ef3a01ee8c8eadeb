package ima

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	mathrand "math/rand"
	"strings"
	"testing"

	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/measlist"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
	"github.com/stretchr/testify/require"
)

// field returns the stored bytes of the first field id of e.
func field(e *template.Entry, id template.FieldID) []byte {
	for i, f := range e.Desc.Fields() {
		if f == id {
			return e.Fields[i]
		}
	}
	return nil
}

// TestBootOrder checks the order in which ima_init.c:ima_init() adds records:
// boot_aggregate first, over PCRs 0-9 of the SHA-256 bank (ima_hash), then
// the kernel_version critical data (ima-buf) when the policy measures
// critical data; nothing else.
func TestBootOrder(t *testing.T) {
	for _, critical := range []bool{false, true} {
		fw := &firmware{}
		tpm := newSoftware(t, twoBanks...)
		k := mustNew(t, Config{TPM: tpm, HashAlgo: "sha256", Firmware: fw.run, CriticalData: critical, KernelVersion: "7.2.0-test"})
		require.Equal(t, 1, fw.runs)
		es := k.Queue().Entries(measlist.Current)
		if critical {
			require.Len(t, es, 2)
		} else {
			require.Len(t, es, 1)
		}
		ba := es[0]
		require.Equal(t, template.BootAggregateName, eventName(ba))
		require.Equal(t, "ima-ng", ba.Desc.Name())
		require.Equal(t, uint32(10), ba.PCR)
		h := sha256.New()
		for i := 0; i < 10; i++ {
			h.Write(pcr(t, tpm, i, tpmext.SHA256))
		}
		want := append([]byte("sha256:\x00"), h.Sum(nil)...)
		require.Equal(t, want, field(ba, template.FieldDNG), "boot aggregate over PCR 0-9 of the sha256 bank")
		if critical {
			kv := es[1]
			require.Equal(t, "ima-buf", kv.Desc.Name())
			require.Equal(t, "kernel_version", eventName(kv))
			require.Equal(t, []byte("7.2.0-test"), field(kv, template.FieldBuf))
		}
		// The whole list replays to PCR 10 of both banks.
		requireReplays(t, tpm, 10, func(alg tpmext.Algorithm) []byte { return read(t, k, bankFile(t, k, alg, false)) })
	}
}

// TestBootWithoutTPM checks TPM-bypass: an all-zero boot aggregate, only
// the SHA-1 list file, and measurements that work.
func TestBootWithoutTPM(t *testing.T) {
	k := mustNew(t, Config{})
	require.Nil(t, k.TPM())
	ba := k.Queue().Entries(measlist.Current)[0]
	require.Equal(t, append([]byte("sha1:\x00"), make([]byte, 20)...), field(ba, template.FieldDNG))
	measure(t, k, "nt", 3)
	require.Equal(t, "4\n", string(read(t, k, staging.RuntimeMeasurementsCount)))
	var list []string
	for _, e := range k.SecurityFS().ReadDir() {
		if strings.HasPrefix(e.Name, "binary_runtime_measurements_") {
			list = append(list, e.Name)
		}
	}
	require.Equal(t, []string{"binary_runtime_measurements_sha1"}, list)
}

// TestHashAndTemplateConfig checks ima_hash=, ima_template= and
// ima_template_fmt= as ima.New takes them.
func TestHashAndTemplateConfig(t *testing.T) {
	t.Run("ima template refuses sha256", func(t *testing.T) {
		_, err := New(Config{TPM: newSoftware(t, twoBanks...), Template: "ima", HashAlgo: "sha256"})
		require.Error(t, err)
		require.Contains(t, err.Error(), "ima")
	})
	t.Run("ima template with sha1", func(t *testing.T) {
		k := mustNew(t, Config{TPM: newSoftware(t, twoBanks...), Template: "ima", HashAlgo: "sha1"})
		measure(t, k, "legacy", 2)
		for _, e := range decode(t, read(t, k, "binary_runtime_measurements"), 20) {
			require.Equal(t, "ima", e.Desc.Name())
		}
		require.Equal(t, template.HashSHA1, k.Layout().HashAlgo())
	})
	t.Run("custom format", func(t *testing.T) {
		const fmtStr = "d-ng|n-ng|iuid"
		k := mustNew(t, Config{TPM: newSoftware(t, twoBanks...), HashAlgo: "sha256", TemplateFmt: fmtStr})
		require.Equal(t, "", k.Template().Name(), "a custom descriptor has no name")
		require.Equal(t, fmtStr, k.Template().Fmt())
		f := file("custom", 0)
		f.UID = 1234
		require.NoError(t, k.Measure(f))
		ascii := string(read(t, k, "ascii_runtime_measurements_sha256"))
		lines := strings.Split(strings.TrimSpace(ascii), "\n")
		require.Len(t, lines, 2)
		for _, l := range lines {
			require.Equal(t, fmtStr, strings.Fields(l)[2], "the template name shown is the format")
		}
		require.True(t, strings.HasSuffix(lines[1], " 1234"), lines[1])
		es := decode(t, read(t, k, "binary_runtime_measurements"), 20)
		require.Equal(t, fmtStr, es[1].Desc.Fmt())
	})
	t.Run("both template and format", func(t *testing.T) {
		_, err := New(Config{TPM: newSoftware(t, twoBanks...), Template: "ima-ng", TemplateFmt: "d-ng|n-ng"})
		require.Error(t, err)
	})
	t.Run("unknown template", func(t *testing.T) {
		_, err := New(Config{TPM: newSoftware(t, twoBanks...), Template: "ima-nope"})
		require.Error(t, err)
	})
	t.Run("unknown hash", func(t *testing.T) {
		_, err := New(Config{TPM: newSoftware(t, twoBanks...), HashAlgo: "sha999"})
		require.Error(t, err)
	})
	t.Run("default sha1 ima-ng", func(t *testing.T) {
		k := mustNew(t, Config{TPM: newSoftware(t, twoBanks...)})
		require.Equal(t, template.HashSHA1, k.Layout().HashAlgo())
		require.Equal(t, "ima-ng", k.Template().Name())
		require.NoError(t, k.Measure(file("d", 0)))
		e := k.Queue().Entries(measlist.Current)[1]
		require.True(t, bytes.HasPrefix(field(e, template.FieldDNG), []byte("sha1:\x00")))
	})
	t.Run("ima_hash=sha256 digests files with sha256", func(t *testing.T) {
		k := mustNew(t, Config{TPM: newSoftware(t, twoBanks...), HashAlgo: "sha256"})
		f := file("h", 0)
		require.NoError(t, k.Measure(f))
		e := k.Queue().Entries(measlist.Current)[1]
		sum := sha256.Sum256(f.Content)
		require.Equal(t, append([]byte("sha256:\x00"), sum[:]...), field(e, template.FieldDNG))
		require.Contains(t, string(read(t, k, "ascii_runtime_measurements")), "sha256:"+hex.EncodeToString(sum[:]))
	})
}

// TestMeasurePCR checks CONFIG_IMA_MEASURE_PCR_IDX (8 to 14) and a policy
// rule's pcr=: records carry the PCR, and only that PCR is extended.
func TestMeasurePCR(t *testing.T) {
	for _, bad := range []int{7, 15, -1} {
		_, err := New(Config{TPM: newSoftware(t, twoBanks...), MeasurePCR: bad})
		require.Error(t, err, "MeasurePCR %d", bad)
	}
	for _, idx := range []int{8, 11, 14} {
		tpm := newSoftware(t, twoBanks...)
		k := mustNew(t, Config{TPM: tpm, MeasurePCR: idx, CriticalData: true})
		require.Equal(t, idx, k.MeasurePCR())
		measure(t, k, "p", 3)
		require.NoError(t, k.Violation("/tmp/v", nil, CauseOpenWriters))
		for _, e := range k.Queue().Entries(measlist.Current) {
			require.Equal(t, uint32(idx), e.PCR)
		}
		requireReplays(t, tpm, uint32(idx), func(alg tpmext.Algorithm) []byte { return read(t, k, bankFile(t, k, alg, false)) })
		require.Equal(t, make([]byte, 20), pcr(t, tpm, 10, tpmext.SHA1), "PCR 10 untouched")
	}
	// A per-rule pcr= for files and buffers.
	tpm := newSoftware(t, twoBanks...)
	k := mustNew(t, Config{TPM: tpm})
	f := file("rule", 0)
	f.PCR = PCR(12)
	require.NoError(t, k.Measure(f))
	require.NoError(t, k.MeasureBuffer("keyring", []byte("key"), BufferOptions{PCR: PCR(13)}))
	list := read(t, k, "binary_runtime_measurements_sha256")
	for _, p := range []uint32{10, 12, 13} {
		require.Equal(t, replay(t, list, tpmext.SHA256, p), pcr(t, tpm, int(p), tpmext.SHA256), "PCR %d", p)
	}
	require.NotEqual(t, make([]byte, 32), pcr(t, tpm, 12, tpmext.SHA256))
}

// TestBootIDRand: a seeded Config.BootIDRand gives the same boot ids, at
// boot and at kexec, in two runs; without it every boot gets a new random
// one.
func TestBootIDRand(t *testing.T) {
	ids := func(src io.Reader) []string {
		tpm, err := tpmext.NewSoftware(tpmext.SHA1)
		if err != nil {
			t.Fatal(err)
		}
		k, err := New(Config{TPM: tpm, Kexec: true, BootIDRand: src})
		if err != nil {
			t.Fatal(err)
		}
		k2, err := k.Kexec()
		if err != nil {
			t.Fatal(err)
		}
		return []string{k.BootID(), k2.BootID()}
	}
	a := ids(mathrand.New(mathrand.NewSource(7)))
	b := ids(mathrand.New(mathrand.NewSource(7)))
	if a[0] != b[0] || a[1] != b[1] || a[0] == a[1] {
		t.Errorf("seeded boot ids %v and %v: want the same two, different from each other", a, b)
	}
	if len(a[0]) != 36 || a[0][14] != '4' {
		t.Errorf("boot id %q is not a version-4 UUID", a[0])
	}
	c, d := ids(nil), ids(nil)
	if c[0] == d[0] || c[0] == c[1] {
		t.Errorf("random boot ids repeat: %v %v", c, d)
	}
}
