package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops/agents/scripted"
)

const evalDialogues = "../../agents/scripted/testdata/dialogues"

func scriptedFor(t *testing.T, name string) *scripted.Server {
	t.Helper()
	d, err := scripted.LoadDialogue(evalDialogues + "/" + name + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv := scripted.NewServer(d.Script(), scripted.WithAPIKey("sk-test-key-0123456789"))
	t.Cleanup(srv.Close)
	return srv
}

func TestRunEval(t *testing.T) {
	srv := scriptedFor(t, "provisioning")
	t.Setenv("EVAL_TEST_KEY", "sk-test-key-0123456789")
	var out, errb bytes.Buffer
	err := runEval(context.Background(), []string{"--base-url", srv.BaseURL(), "--model", "scripted-model",
		"--api-key-env", "EVAL_TEST_KEY", "--dialogues", evalDialogues, "--run", "^provisioning$", "--min-score", "1"}, &out, &errb)
	if err != nil {
		t.Fatalf("runEval: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "provisioning") || !strings.Contains(out.String(), "3/3  1.00") ||
		!strings.Contains(out.String(), "mean score 1.00 over 1 dialogues") {
		t.Errorf("output:\n%s", out.String())
	}
	if strings.Contains(out.String()+errb.String(), "sk-test-key") {
		t.Error("the API key was printed")
	}
}

func TestRunEvalScoresAMiss(t *testing.T) {
	// The model answers as in provisioning, the dialogue is the morning briefing: off script.
	srv := scriptedFor(t, "provisioning")
	t.Setenv("EVAL_TEST_KEY", "sk-test-key-0123456789")
	var out, errb bytes.Buffer
	err := runEval(context.Background(), []string{"--base-url", srv.BaseURL(), "--model", "scripted-model",
		"--api-key-env", "EVAL_TEST_KEY", "--dialogues", evalDialogues, "--run", "^morning-briefing$",
		"--min-score", "0.5", "--json"}, &out, &errb)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("got %v, want exit 1", err)
	}
	var res struct {
		Mean      float64 `json:"mean_score"`
		Dialogues []struct {
			Name  string  `json:"name"`
			Score float64 `json:"score"`
		} `json:"dialogues"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("json output: %v\n%s", err, out.String())
	}
	if res.Mean != 0 || len(res.Dialogues) != 1 || res.Dialogues[0].Name != "morning-briefing" {
		t.Errorf("results: got %+v", res)
	}
}

func TestRunEvalBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--base-url", "http://127.0.0.1:1/v1"},
		{"--model", "m"},
		{"--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--min-score", "2"},
		{"--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--run", "("},
		{"--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--dialogues", evalDialogues, "--run", "^nothing$"},
	} {
		var out, errb bytes.Buffer
		err := runEval(context.Background(), args, &out, &errb)
		var ee exitError
		if !errors.As(err, &ee) || ee.code != 2 {
			t.Errorf("runEval(%q): got %v, want exit 2", args, err)
		}
	}
}
