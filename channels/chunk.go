package channels

import (
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Platform message limits, in UTF-16 code units (what Telegram counts; never less than the
// characters Discord, Slack and WhatsApp count, so the same measure is safe for all).
const (
	LimitTelegram   = 4096
	LimitSlackText  = 40000
	LimitSlackBlock = 3000
	LimitDiscord    = 2000
	LimitWhatsApp   = 65536
)

// TextLen is the length of s in UTF-16 code units.
func TextLen(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// Chunk splits text into pieces of at most max UTF-16 code units whose concatenation is
// exactly text. It cuts after the last newline that fits, else after the last space, else
// between two runes: never inside a UTF-8 sequence or a surrogate pair. Text that fits is one
// chunk; empty text is no chunks. max below 2 is treated as 2 (room for any one rune).
func Chunk(text string, max int) []string {
	max = maxInt(max, 2)
	var out []string
	for text != "" {
		if TextLen(text) <= max {
			return append(out, text)
		}
		cut := fitPrefix(text, max)
		if i := strings.LastIndexByte(text[:cut], '\n'); i > 0 {
			cut = i + 1
		} else if i := strings.LastIndexAny(text[:cut], " \t"); i > 0 {
			cut = i + 1
		}
		out = append(out, text[:cut])
		text = text[cut:]
	}
	return out
}

// fitPrefix returns the byte length of the longest prefix of s of at most max code units;
// it is at least one rune long.
func fitPrefix(s string, max int) int {
	n, i := 0, 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		w := utf16.RuneLen(r)
		if w < 0 {
			w = 1 // invalid UTF-8 byte: one replacement character
		}
		if n+w > max && i > 0 {
			break
		}
		n += w
		i += size
	}
	return i
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}
