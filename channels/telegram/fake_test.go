package telegram_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops/channels/telegram/telegramtest"
)

// fakeBot is the shared fake Bot API with the short names these tests use.
type fakeBot struct{ *telegramtest.Server }

type apiFailure = telegramtest.Failure

func newFakeBot(t *testing.T, token string) *fakeBot {
	return &fakeBot{telegramtest.NewServer(t, token)}
}

func (f *fakeBot) endpoint() string                          { return f.Endpoint() }
func (f *fakeBot) pushMessage(chat, from int64, text string) { f.PushMessage(chat, from, text) }
func (f *fakeBot) pushPress(from int64, data string) string  { return f.PushPress(from, data) }
func (f *fakeBot) fail(method string, fails ...apiFailure)   { f.Fail(method, fails...) }
func (f *fakeBot) callsOf(method string) []url.Values        { return f.Calls(method) }

// wire turns a request's parameters into JSON-friendly values for golden files, decoding
// the JSON-valued ones.
func wire(p url.Values) map[string]any {
	out := map[string]any{}
	for k := range p {
		v := p.Get(k)
		var j any
		if (strings.HasPrefix(v, "{") || strings.HasPrefix(v, "[")) && json.Unmarshal([]byte(v), &j) == nil {
			out[k] = j
		} else {
			out[k] = v
		}
	}
	return out
}
