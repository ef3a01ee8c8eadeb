package eventlog

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/imasim/imasim/tpmext"
)

// ErrPCRFile is wrapped by the errors of ParsePCRFile.
var ErrPCRFile = errors.New("eventlog: malformed PCR file")

// ParsePCRFile reads the values of one bank's PCRs from a text file in
// either of two styles:
//
//	PCR-10: 9be6bac02bf18d09d17e726c2df00bca4e8831ea
//	 PCR 10: 9b e6 ba c0 2b f1 8d 09 d1 7e 72 6c 2d f0 0b ca 4e 88 31 ea
//
// The first is evmctl's --pcrs format (also TPM 1.2 sysfs "pcrs", whose
// hex has single spaces between bytes); the second the IBM TSS style of
// imakvtpcr10.txt. Hex may be upper or lower case; blank lines and lines
// starting with '#' are skipped. Lines may come in any order and need not
// start at PCR 0.
//
// A file may give several values for one PCR, one per bank, as
// imakvtpcr10.txt does for four banks without naming them: the value whose
// length is bank's digest size is taken. It is an error if no value, or
// more than one differing value, has that length.
//
// It also reads the YAML that tpm2_pcrread (tpm2-tools) prints, which
// names its banks:
//
//	sha256:
//	  0 : 0x0000000000000000000000000000000000000000000000000000000000000000
//	  10: 0x9BE6BAC02BF18D09D17E726C2DF00BCA4E8831EA9BE6BAC02BF18D09D17E726C
//
// Then the values of bank's section are taken, and a file without that
// section is an error.
//
// Follows the parsing of ima-evm-utils src/evmctl.c:read_one_bank(), more
// leniently (evmctl takes only PCR-00, PCR-01, ... in order).
func ParsePCRFile(r io.Reader, bank tpmext.Algorithm) (map[int][]byte, error) {
	if !bank.Known() {
		return nil, fmt.Errorf("%w: unknown bank %v", ErrPCRFile, bank)
	}
	type value struct {
		line int
		v    []byte
	}
	var lines []string
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 64<<10)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPCRFile, err)
	}
	if isPCRRead(lines) {
		return parsePCRRead(lines, bank)
	}
	byPCR := map[int][]value{}
	for n, line := range contentLines(lines) {
		head, rest, ok := strings.Cut(line, ":")
		if !ok || len(head) < 4 || !strings.EqualFold(head[:3], "PCR") || (head[3] != '-' && head[3] != ' ') {
			return nil, fmt.Errorf("%w: line %d: want \"PCR-NN: hex\" or \"PCR NN: hex\"", ErrPCRFile, n)
		}
		pcr, err := parsePCRNumber(head[4:], n)
		if err != nil {
			return nil, err
		}
		h := strings.ReplaceAll(strings.TrimSpace(rest), " ", "")
		v, err := hex.DecodeString(h)
		if err != nil || len(v) == 0 {
			return nil, fmt.Errorf("%w: line %d: PCR %d value is not hex", ErrPCRFile, n, pcr)
		}
		byPCR[pcr] = append(byPCR[pcr], value{n, v})
	}
	if len(byPCR) == 0 {
		return nil, fmt.Errorf("%w: no PCR values", ErrPCRFile)
	}
	out := make(map[int][]byte, len(byPCR))
	for _, pcr := range slices.Sorted(maps.Keys(byPCR)) { // the lowest bad PCR is the one named
		vs := byPCR[pcr]
		var pick []byte
		var sizes []int
		for _, v := range vs {
			sizes = append(sizes, len(v.v))
			if len(v.v) != bank.Size() {
				continue
			}
			if pick != nil && !bytes.Equal(pick, v.v) {
				return nil, fmt.Errorf("%w: line %d: a second, different %d-byte value for PCR %d", ErrPCRFile, v.line, bank.Size(), pcr)
			}
			pick = v.v
		}
		if pick == nil {
			return nil, fmt.Errorf("%w: no %d-byte value for %v PCR %d (the file gives %v-byte values: another bank?)", ErrPCRFile, bank.Size(), bank, pcr, slices.Compact(sizes))
		}
		out[pcr] = pick
	}
	return out, nil
}

// AppendPCRFile appends values (values[i] is PCR i) in evmctl's --pcrs
// format: "PCR-NN: hex" lines from PCR-00 on, the only shape evmctl reads.
func AppendPCRFile(dst []byte, values [][]byte) []byte {
	for i, v := range values {
		dst = fmt.Appendf(dst, "PCR-%02d: %x\n", i, v)
	}
	return dst
}

// isPCRRead reports whether lines look like tpm2_pcrread output: the first
// line that is not blank or a comment is a bank name and a colon.
func isPCRRead(lines []string) bool {
	for _, l := range contentLines(lines) {
		name, rest, ok := strings.Cut(l, ":")
		return ok && rest == "" && !strings.HasPrefix(strings.ToUpper(name), "PCR")
	}
	return false
}

// parsePCRRead reads bank's section of tpm2_pcrread output.
func parsePCRRead(lines []string, bank tpmext.Algorithm) (map[int][]byte, error) {
	out := map[int][]byte{}
	var sections []string
	in, found := false, false
	for n, l := range contentLines(lines) {
		head, rest, ok := strings.Cut(l, ":")
		rest = strings.TrimSpace(rest)
		if !ok {
			return nil, fmt.Errorf("%w: line %d: want \"BANK:\" or \"NN: 0xHEX\" (tpm2_pcrread output)", ErrPCRFile, n)
		}
		if rest == "" { // a bank
			sections = append(sections, head)
			alg, err := tpmext.ParseAlgorithm(head)
			in = err == nil && alg == bank
			found = found || in
			continue
		}
		if len(sections) == 0 {
			return nil, fmt.Errorf("%w: line %d: a PCR value before any bank", ErrPCRFile, n)
		}
		if !in {
			continue
		}
		pcr, err := parsePCRNumber(head, n)
		if err != nil {
			return nil, err
		}
		h, ok := strings.CutPrefix(strings.ToLower(rest), "0x")
		v, err := hex.DecodeString(h)
		if !ok || err != nil {
			return nil, fmt.Errorf("%w: line %d: PCR %d value is not 0x and hex", ErrPCRFile, n, pcr)
		}
		if len(v) != bank.Size() {
			return nil, fmt.Errorf("%w: line %d: %v PCR %d value is %d bytes, want %d", ErrPCRFile, n, bank, pcr, len(v), bank.Size())
		}
		if _, dup := out[pcr]; dup {
			return nil, fmt.Errorf("%w: line %d: %v PCR %d given twice", ErrPCRFile, n, bank, pcr)
		}
		out[pcr] = v
	}
	if !found {
		return nil, fmt.Errorf("%w: no %v bank in the tpm2_pcrread output (it has %s)", ErrPCRFile, bank, strings.Join(sections, ", "))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no PCR values in the %v bank", ErrPCRFile, bank)
	}
	return out, nil
}

// parsePCRNumber reads the PCR number of line n: one or two digits, 0 to 23.
func parsePCRNumber(s string, n int) (int, error) {
	num := strings.TrimSpace(s)
	pcr, err := strconv.Atoi(num)
	if err != nil || pcr < 0 || pcr >= tpmext.NumPCRs || len(num) > 2 {
		return 0, fmt.Errorf("%w: line %d: PCR number %q not in 0-%d", ErrPCRFile, n, num, tpmext.NumPCRs-1)
	}
	return pcr, nil
}

// contentLines yields the number (from 1) and the trimmed text of each line
// that is neither blank nor a '#' comment.
func contentLines(lines []string) iter.Seq2[int, string] {
	return func(yield func(int, string) bool) {
		for i, text := range lines {
			l := strings.TrimSpace(text)
			if l == "" || l[0] == '#' {
				continue
			}
			if !yield(i+1, l) {
				return
			}
		}
	}
}
