package scenario

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// word is one shell word or a redirection operator.
type word struct {
	text string
	op   bool // an unquoted ">" or ">>"
}

// splitWords splits a command line as a POSIX shell would, for the small
// subset scripts use: blanks separate words; 'single quotes' are literal;
// "double quotes" take \" \\ \$ and \` as escapes; a backslash outside
// quotes quotes the next character; an unquoted '#' at the start of a word
// starts a comment; '>' and '>>' are redirection operators even when not
// surrounded by blanks. Pipes, lists, input redirection, and expansions
// ('|', ';', '&', '<', '$', '`', '(', ')') are refused, so that a script
// never means something other than what a shell would do with it.
func splitWords(line string) ([]word, error) {
	var (
		out    []word
		cur    strings.Builder
		inWord bool
	)
	flush := func() {
		if inWord {
			out = append(out, word{text: cur.String()})
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			flush()
		case c == '#' && !inWord:
			return out, nil
		case c == '>':
			flush()
			if i+1 < len(line) && line[i+1] == '>' {
				out = append(out, word{text: ">>", op: true})
				i++
			} else {
				out = append(out, word{text: ">", op: true})
			}
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(line[i+1 : i+1+j])
			inWord = true
			i += j + 1
		case c == '"':
			inWord = true
			i++
			for ; ; i++ {
				if i >= len(line) {
					return nil, errors.New("unterminated double quote")
				}
				c := line[i]
				if c == '"' {
					break
				}
				if c == '$' || c == '`' {
					return nil, fmt.Errorf("%q expansion is not supported (quote it with a backslash)", c)
				}
				if c == '\\' && i+1 < len(line) && strings.IndexByte("\"\\$`", line[i+1]) >= 0 {
					i++
					c = line[i]
				}
				cur.WriteByte(c)
			}
		case c == '\\':
			if i+1 >= len(line) {
				return nil, errors.New("backslash at the end of the line")
			}
			i++
			cur.WriteByte(line[i])
			inWord = true
		case strings.IndexByte("|;&<$`()", c) >= 0:
			return nil, fmt.Errorf("%q is not supported in scenario scripts (quote it if it is part of a word)", c)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return out, nil
}

// unescape interprets the backslash escapes of printf(1)'s format (and of
// echo -e): \\ \a \b \f \n \r \t \v \" \' \NNN (one to three octal digits,
// \0 included) and \xHH (one or two hex digits). Any other backslash is
// kept with the character after it, as printf does.
func unescape(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch c = s[i]; c {
		case '\\':
			b.WriteByte('\\')
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte('\v')
		case '"', '\'':
			b.WriteByte(c)
		case 'x':
			j := i + 1
			for j < len(s) && j < i+3 && isHex(s[j]) {
				j++
			}
			if j == i+1 {
				b.WriteString(`\x`)
				continue
			}
			v, _ := strconv.ParseUint(s[i+1:j], 16, 8)
			b.WriteByte(byte(v))
			i = j - 1
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := i
			for j < len(s) && j < i+3 && s[j] >= '0' && s[j] <= '7' {
				j++
			}
			v, _ := strconv.ParseUint(s[i:j], 8, 16)
			b.WriteByte(byte(v))
			i = j - 1
		default:
			b.WriteByte('\\')
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// printfFormat is printf(1) with one use of the format: escapes, %s (the
// next argument, or nothing), %b (the next argument with its escapes
// interpreted), %d (the next argument, which must be an integer) and %%.
func printfFormat(format string, args []string) (string, error) {
	format = unescape(format)
	var b strings.Builder
	next := func() string {
		if len(args) == 0 {
			return ""
		}
		a := args[0]
		args = args[1:]
		return a
	}
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(format) {
			return "", errors.New("printf: '%' at the end of the format")
		}
		i++
		switch format[i] {
		case '%':
			b.WriteByte('%')
		case 's':
			b.WriteString(next())
		case 'b':
			b.WriteString(unescape(next()))
		case 'd':
			a := next()
			if a == "" {
				a = "0"
			}
			if _, err := strconv.ParseInt(a, 10, 64); err != nil {
				return "", fmt.Errorf("printf: %q: not a number", a)
			}
			b.WriteString(a)
		default:
			return "", fmt.Errorf("printf: %%%c is not supported (only %%s, %%b, %%d and %%%%)", format[i])
		}
	}
	if len(args) > 0 {
		return "", fmt.Errorf("printf: %d arguments left over (reusing the format is not supported)", len(args))
	}
	return b.String(), nil
}
