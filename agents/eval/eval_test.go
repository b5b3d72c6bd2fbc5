package eval

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops/agents/llm"
	"github.com/gatewayforge/clawops/agents/scripted"
)

// dialoguesDir holds the seed and adversarial dialogues shipped with the scripted model.
const dialoguesDir = "../scripted/testdata/dialogues"

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// TestDialogues plays every shipped dialogue through real sessions and the real gate,
// with the scripted model served over HTTP to the real go-openai client.
func TestDialogues(t *testing.T) {
	ds, err := scripted.LoadDialogues(dialoguesDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		t.Run(d.Name, func(t *testing.T) {
			srv := scripted.NewServer(d.Script())
			defer srv.Close()
			client, err := llm.New(llm.Options{BaseURL: srv.BaseURL(), Models: []string{"scripted-model"}, MaxRetries: -1})
			if err != nil {
				t.Fatal(err)
			}
			res, err := Run(context.Background(), d, Options{Model: client, Dir: t.TempDir(), Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			for _, tr := range res.Turns {
				if tr.Err != nil {
					t.Errorf("%v\nobserved calls: %+v\nreplies: %q", tr.Err, tr.Observation.Calls, tr.Observation.Replies)
				}
			}
			if err := srv.Verify(); err != nil {
				t.Errorf("script: %v", err)
			}
			if !res.OK() {
				t.Errorf("score: got %.2f, want 1", res.Score())
			}
		})
	}
}
