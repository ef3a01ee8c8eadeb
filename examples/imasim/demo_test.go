package main

import (
	"strings"
	"testing"
)

// TestDemoREADME: imasim demo prints the same for the same seed, boot ids
// included, and the README shows its summary as it is (from "measured"
// on; the lines above name the TPM back end of the build).
func TestDemoREADME(t *testing.T) {
	rc, out, errs := evCmd("demo")
	if rc != 0 {
		t.Fatalf("imasim demo: exit %d\n%s%s", rc, out, errs)
	}
	if rc, again, _ := evCmd("demo"); rc != 0 || again != out {
		t.Errorf("two runs of imasim demo differ:\n%s\n---\n%s", out, again)
	}
	i := strings.Index(out, "\nmeasured ")
	if i < 0 {
		t.Fatalf("no summary in\n%s", out)
	}
	summary := out[i+1:]
	readme := string(evReadFile(t, "../../README.md"))
	if !strings.Contains(readme, "```\n"+summary+"```\n") {
		t.Errorf("README.md's sample output of imasim demo is stale; the demo prints:\n%s", summary)
	}
}
