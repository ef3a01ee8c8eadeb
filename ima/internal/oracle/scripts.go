package oracle

import (
	"embed"
	"path"
	"sort"
)

// scriptFS holds the scripts both machines run.
//
//go:embed testdata/*.txt
var scriptFS embed.FS

// Scripts parses every script in testdata/, sorted by name (the file name
// without .txt).
func Scripts() ([]*Script, error) {
	names, err := scriptFS.ReadDir("testdata")
	if err != nil {
		return nil, err
	}
	var out []*Script
	for _, de := range names {
		src, err := scriptFS.ReadFile(path.Join("testdata", de.Name()))
		if err != nil {
			return nil, err
		}
		s, err := Parse(de.Name()[:len(de.Name())-len(".txt")], src)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// CmdLine is the kernel command line for s, after the console and panic
// options: ima_hash=, ima_template= or ima_template_fmt=, ima_flush_htable
// if the script boots with them, and oracle.script=NAME, which tells the
// guest's init which script to run.
func (s *Script) CmdLine() string {
	c := "ima_hash=" + s.HashAlgo.String()
	if s.Template != "" {
		c += " ima_template=" + s.Template
	}
	if s.TemplateFmt != "" {
		c += " ima_template_fmt=" + s.TemplateFmt
	}
	if s.Flush {
		c += " ima_flush_htable"
	}
	return c + " oracle.script=" + s.Name
}
