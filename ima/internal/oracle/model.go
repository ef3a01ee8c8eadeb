package oracle

import (
	"errors"
	"syscall"

	"github.com/imasim/imasim/ima"
	"github.com/imasim/imasim/ima/template"
	"github.com/imasim/imasim/staging"
	"github.com/imasim/imasim/tpmext"
)

// PolicyOwner is the file owner the guest's policy rule measures:
// "measure func=FILE_CHECK mask=MAY_READ fowner=1234".
const PolicyOwner = 1234

// Policy is the IMA policy the guest loads before running a script.
const Policy = "measure func=FILE_CHECK mask=MAY_READ fowner=1234\n"

// Model is the model booted as the guest kernel is: a software TPM with
// the same banks, CONFIG_IMA_STAGING, no kexec, and ima_hash=,
// ima_template(_fmt)= and ima_flush_htable as the script says.
type Model struct {
	K *ima.Kernel
}

// NewModel boots the model for script s.
func NewModel(s *Script) (*Model, error) {
	tpm, err := tpmext.NewSoftware(Banks...)
	if err != nil {
		return nil, err
	}
	k, err := ima.New(ima.Config{TPM: tpm, HashAlgo: s.HashAlgo.String(), Template: s.Template,
		TemplateFmt: s.TemplateFmt, MeasurePCR: MeasurePCR, Staging: true, FlushHtable: s.Flush})
	if err != nil {
		return nil, err
	}
	return &Model{K: k}, nil
}

// Do runs fn with the securityfs as seen by t.
func (m *Model) Do(t Task, fn func(staging.FS) error) error {
	return fn(m.K.FS(t.stagingTask()))
}

// Measure measures the file as the guest's policy rule does; a violation
// first records open_writers, as ima_rdwr_violation_check() does before
// the measurement.
func (m *Model) Measure(path string, content []byte, violation bool) error {
	// The guest's file: owned by PolicyOwner, a regular file of mode 0644.
	f := template.File{Content: content, UID: PolicyOwner, GID: PolicyOwner, Mode: syscall.S_IFREG | 0o644}
	if violation {
		if err := m.K.Violation(path, &f, "open_writers"); err != nil {
			return err
		}
	}
	err := m.K.Measure(ima.File{Path: path, File: f})
	if errors.Is(err, syscall.EEXIST) {
		// A duplicate is not recorded (ima_queue.c:ima_add_template_entry()
		// returns -EEXIST), but the open(2) that measured the file never
		// sees it: ima_file_check() does not fail for measurement errors.
		return nil
	}
	return err
}

// Close releases f as task t (staging.SimFile.CloseAs).
func (m *Model) Close(t Task, f staging.File) error {
	return f.(*staging.SimFile).CloseAs(t.stagingTask())
}

// ReadDir lists the simulated directory.
func (m *Model) ReadDir() ([]staging.DirEntry, error) { return m.K.SecurityFS().ReadDir(), nil }

// ReadPCR reads the software TPM.
func (m *Model) ReadPCR(pcr int, bank tpmext.Algorithm) ([]byte, error) {
	return m.K.TPM().ReadPCR(pcr, bank)
}
