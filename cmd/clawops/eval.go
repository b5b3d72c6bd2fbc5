package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/gatewayforge/clawops/agents/eval"
	"github.com/gatewayforge/clawops/agents/llm"
	"github.com/gatewayforge/clawops/agents/scripted"
)

// runEval plays the dialogues against a real OpenAI-compatible model and prints a score
// per dialogue:
//
//	clawops eval --base-url URL --model NAME [--model FALLBACK] [--api-key-env VAR]
//	             [--dialogues DIR] [--run REGEXP] [--turn-timeout 5m] [--min-score 0.8] [--json]
//
// Each dialogue runs on a fresh SQLite file with the real gate and the fixture fleet (see
// agents/eval); the scripted steps in the files are ignored, the model decides. The API
// key is read from the environment variable named by --api-key-env, never from a flag, so
// it does not show up in shell history or process lists.
func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	baseURL := fs.String("base-url", "", "OpenAI-compatible API root, e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1")
	var models evalModels
	fs.Var(&models, "model", "model name; repeat for a failover list (first is primary)")
	keyEnv := fs.String("api-key-env", "OPENAI_API_KEY", "environment variable holding the API key (may be unset for local servers)")
	dir := fs.String("dialogues", "agents/scripted/testdata/dialogues", "folder of dialogue *.yaml files")
	only := fs.String("run", "", "only dialogues whose name matches this regular expression")
	turnTimeout := fs.Duration("turn-timeout", 5*time.Minute, "limit for one turn, background agent runs included")
	minScore := fs.Float64("min-score", 0, "exit 1 when the mean score is below this (0 to 1)")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	verbose := fs.Bool("v", false, "log warnings of the agents and the gate to stderr")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *baseURL == "" || len(models) == 0 {
		fmt.Fprintln(stderr, "clawops eval: --base-url and --model are required")
		return exitError{2}
	}
	if *minScore < 0 || *minScore > 1 {
		fmt.Fprintln(stderr, "clawops eval: --min-score must be between 0 and 1")
		return exitError{2}
	}
	var filter *regexp.Regexp
	if *only != "" {
		var err error
		if filter, err = regexp.Compile(*only); err != nil {
			fmt.Fprintf(stderr, "clawops eval: --run: %v\n", err)
			return exitError{2}
		}
	}
	logLevel := slog.LevelError + 1
	if *verbose {
		logLevel = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel}))
	client, err := llm.New(llm.Options{BaseURL: *baseURL, APIKey: os.Getenv(*keyEnv), Models: models, Logger: log})
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	dialogues, err := scripted.LoadDialogues(*dir)
	if err != nil {
		return fmt.Errorf("eval: %w (run from the repository root or pass --dialogues)", err)
	}
	var results []eval.Result
	for _, d := range dialogues {
		if filter != nil && !filter.MatchString(d.Name) {
			continue
		}
		res, err := runOneEval(ctx, d, client, *turnTimeout, log)
		if err != nil {
			res.Err = err
		}
		results = append(results, res)
		if !*asJSON {
			printEvalResult(stdout, res)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(results) == 0 {
		fmt.Fprintf(stderr, "clawops eval: no dialogue matches %q\n", *only)
		return exitError{2}
	}
	mean := 0.0
	for _, r := range results {
		mean += r.Score()
	}
	mean /= float64(len(results))
	if *asJSON {
		if err := printEvalJSON(stdout, results, mean); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "\nmean score %.2f over %d dialogues (model %s)\n", mean, len(results), strings.Join(models, ", "))
	}
	if mean < *minScore {
		return exitError{1}
	}
	return ctx.Err()
}

func runOneEval(ctx context.Context, d scripted.Dialogue, model *llm.Client, turnTimeout time.Duration, log *slog.Logger) (eval.Result, error) {
	dir, err := os.MkdirTemp("", "clawops-eval-")
	if err != nil {
		return eval.Result{Dialogue: d.Name}, err
	}
	defer os.RemoveAll(dir)
	return eval.Run(ctx, d, eval.Options{Model: model, Dir: dir, TurnTimeout: turnTimeout, Logger: log})
}

func printEvalResult(w io.Writer, r eval.Result) {
	if r.Err != nil {
		fmt.Fprintf(w, "%-34s  error  %v\n", r.Dialogue, r.Err)
		return
	}
	fmt.Fprintf(w, "%-34s  %d/%d  %.2f\n", r.Dialogue, r.Passed(), len(r.Turns), r.Score())
	for _, t := range r.Turns {
		if t.Err != nil {
			for _, line := range strings.Split(t.Err.Error(), "\n") {
				fmt.Fprintf(w, "    %s\n", line)
			}
		}
	}
}

func printEvalJSON(w io.Writer, results []eval.Result, mean float64) error {
	type turn struct {
		Index   int      `json:"index"`
		Trigger string   `json:"trigger"`
		Passed  bool     `json:"passed"`
		Errors  []string `json:"errors,omitempty"`
	}
	type dialogue struct {
		Name  string  `json:"name"`
		Score float64 `json:"score"`
		Error string  `json:"error,omitempty"`
		Turns []turn  `json:"turns"`
	}
	out := struct {
		Mean      float64    `json:"mean_score"`
		Dialogues []dialogue `json:"dialogues"`
	}{Mean: mean}
	for _, r := range results {
		d := dialogue{Name: r.Dialogue, Score: r.Score(), Turns: []turn{}}
		if r.Err != nil {
			d.Error = r.Err.Error()
		}
		for _, t := range r.Turns {
			tt := turn{Index: t.Index, Trigger: t.Trigger, Passed: t.Err == nil}
			if t.Err != nil {
				tt.Errors = strings.Split(t.Err.Error(), "\n")
			}
			d.Turns = append(d.Turns, tt)
		}
		out.Dialogues = append(out.Dialogues, d)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// evalModels is a repeatable string flag; a value may also hold several, comma-separated.
type evalModels []string

func (s *evalModels) String() string { return strings.Join(*s, ",") }

func (s *evalModels) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}
