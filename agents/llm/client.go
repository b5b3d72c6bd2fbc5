package llm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/gatewayforge/clawops"
)

// Defaults of Options.
const (
	DefaultMaxRetries     = 2
	DefaultBackoff        = 500 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultMaxRetryAfter  = 60 * time.Second
	DefaultAttemptTimeout = 2 * time.Minute
	DefaultAzureVersion   = "2024-10-21"
)

// Options configure a Client.
type Options struct {
	// BaseURL is the API root including its version path, e.g. https://api.openai.com/v1,
	// http://127.0.0.1:11434/v1 (Ollama), or the resource URL for Azure
	// (https://NAME.openai.azure.com). Required.
	BaseURL string
	// APIKey is the bearer token (or Azure api-key). It is a secret: it is never logged
	// and never appears in errors. May be empty for local servers.
	APIKey string
	// Models is the failover list; the first is the primary. At least one is required.
	Models []string
	// Azure, when set, speaks Azure OpenAI's dialect (deployments, api-version).
	Azure *Azure
	// PriceTable prices completions; a model absent from it costs 0 (warned once).
	PriceTable PriceTable
	// MaxRetries is how many times one model is retried after its first attempt on 429,
	// 5xx and transport errors before failing over. 0 means DefaultMaxRetries; negative
	// means no retries.
	MaxRetries int
	// Backoff is the base of the exponential backoff (doubled per retry, with jitter,
	// capped at MaxBackoff). 0 means DefaultBackoff.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits for; a longer one moves
	// on to the next model at once. 0 means DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// AttemptTimeout bounds one HTTP attempt. 0 means DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// HTTPClient carries the requests; nil means a new http.Client.
	HTTPClient *http.Client
	Clock      clawops.Clock
	Logger     *slog.Logger
	// ContextWindow maps a model to its context window in tokens. A model absent from it
	// uses DefaultContextWindow; if that is 0 too, no context warning is raised for it.
	ContextWindow        map[string]int
	DefaultContextWindow int
	// Sleep waits between attempts; nil waits on a timer or until ctx ends. Tests inject
	// one that records the waits instead of sleeping.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns a number in [0, 1) for the backoff jitter; nil uses math/rand/v2.
	Rand func() float64
}

// Azure selects Azure OpenAI's dialect.
type Azure struct {
	// APIVersion is the api-version query parameter; "" means DefaultAzureVersion.
	APIVersion string
	// Deployments maps a model of Options.Models to its deployment name; a model absent
	// from it is used as the deployment name.
	Deployments map[string]string
	// AD says APIKey is a Microsoft Entra ID token, sent as a bearer token instead of in
	// the api-key header.
	AD bool
}

// Client calls one OpenAI-compatible endpoint. It is safe for concurrent use.
type Client struct {
	api    *openai.Client
	opts   Options
	clock  clawops.Clock
	log    *slog.Logger
	sleep  func(ctx context.Context, d time.Duration) error
	random func() float64

	mu       sync.Mutex
	unpriced map[string]bool // models already warned about
}

// New builds a Client. It checks the options but does not contact the endpoint.
func New(opts Options) (*Client, error) {
	const op = "llm new"
	if strings.TrimSpace(opts.BaseURL) == "" {
		return nil, clawops.E(op, clawops.KindInvalid, ReasonBadRequest, "BaseURL is required (e.g. https://api.openai.com/v1)")
	}
	u, err := url.Parse(opts.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL is not echoed: it may carry credentials.
		return nil, clawops.E(op, clawops.KindInvalid, ReasonBadRequest, "BaseURL must be an absolute http(s) URL")
	}
	if len(opts.Models) == 0 {
		return nil, clawops.E(op, clawops.KindInvalid, ReasonBadRequest, "Models needs at least one model")
	}
	for i, m := range opts.Models {
		if strings.TrimSpace(m) == "" {
			return nil, clawops.E(op, clawops.KindInvalid, ReasonBadRequest, fmt.Sprintf("Models[%d] is empty", i))
		}
	}
	if err := opts.PriceTable.validate(); err != nil {
		return nil, clawops.E(op, clawops.KindInvalid, ReasonBadRequest, err)
	}
	opts.Models = append([]string(nil), opts.Models...)
	switch {
	case opts.MaxRetries == 0:
		opts.MaxRetries = DefaultMaxRetries
	case opts.MaxRetries < 0:
		opts.MaxRetries = 0
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MaxRetryAfter <= 0 {
		opts.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = DefaultAttemptTimeout
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	var cfg openai.ClientConfig
	if opts.Azure != nil {
		cfg = openai.DefaultAzureConfig(opts.APIKey, opts.BaseURL)
		if opts.Azure.AD {
			cfg.APIType = openai.APITypeAzureAD
		}
		cfg.APIVersion = opts.Azure.APIVersion
		if cfg.APIVersion == "" {
			cfg.APIVersion = DefaultAzureVersion
		}
		deployments := make(map[string]string, len(opts.Azure.Deployments))
		for k, v := range opts.Azure.Deployments {
			deployments[k] = v
		}
		cfg.AzureModelMapperFunc = func(model string) string {
			if d, ok := deployments[model]; ok {
				return d
			}
			return model
		}
	} else {
		cfg = openai.DefaultConfig(opts.APIKey)
		cfg.BaseURL = opts.BaseURL
	}
	cfg.HTTPClient = attemptDoer{hc}

	c := &Client{
		api:      openai.NewClientWithConfig(cfg),
		opts:     opts,
		clock:    clawops.ClockOrSystem(opts.Clock),
		log:      log.With("component", "llm"),
		sleep:    opts.Sleep,
		random:   opts.Rand,
		unpriced: map[string]bool{},
	}
	if c.sleep == nil {
		c.sleep = sleepCtx
	}
	if c.random == nil {
		c.random = rand.Float64
	}
	return c, nil
}

// Models returns the failover list, primary first.
func (c *Client) Models() []string { return append([]string(nil), c.opts.Models...) }

// Complete sends req to the primary model, retrying and failing over as documented on
// Options, and returns the first completion. Errors are *clawops.Error with one of the
// Reason* codes of this package; nothing is retried after an auth failure or a bad
// request, and a 404 (model not found) moves on to the next model at once.
func (c *Client) Complete(ctx context.Context, req Request) (Response, error) {
	const op = "llm complete"
	oreq, err := buildRequest(req)
	if err != nil {
		return Response{}, clawops.E(op, clawops.KindInvalid, ReasonBadRequest, err)
	}

	attempts := 0
	var last *attemptError
	for mi, model := range c.opts.Models {
		oreq.Model = model
		adaptMaxTokens(&oreq, req.MaxTokens)
		for try := 0; ; try++ {
			attempts++
			start := c.clock.Now()
			resp, meta, err := c.attempt(ctx, oreq)
			if err == nil {
				err = checkResponse(resp)
			}
			if err == nil {
				out := c.response(model, req, resp, attempts)
				c.log.Debug("completion", "model", model, "attempts", attempts,
					"prompt_tokens", out.Usage.Prompt, "completion_tokens", out.Usage.Completion,
					"finish", out.FinishReason, "elapsed", c.clock.Now().Sub(start))
				return out, nil
			}
			ae := classify(ctx, err, meta)
			last = ae
			c.log.Warn("completion attempt failed", "model", model, "try", try+1,
				"status", meta.status, "reason", string(ae.reason), "err", ae.err)
			if ae.fatal {
				return Response{}, clawops.E(op, ae.kind, ae.reason, fmt.Errorf("model %s: %w", model, ae.err))
			}
			if ae.nextModel || try >= c.opts.MaxRetries {
				break
			}
			wait := c.backoff(try)
			if ra, ok := meta.retryAfter(c.clock.Now()); ok {
				if ra > c.opts.MaxRetryAfter {
					c.log.Warn("retry-after too long, moving on", "model", model, "retry_after", ra)
					break
				}
				wait = ra
			}
			if err := c.sleep(ctx, wait); err != nil {
				return Response{}, clawops.E(op, clawops.KindTransient, ReasonCancelled, fmt.Errorf("waiting to retry %s: %w", model, err))
			}
		}
		if mi+1 < len(c.opts.Models) {
			c.log.Warn("failing over", "from", model, "to", c.opts.Models[mi+1], "reason", string(last.reason))
		}
	}
	return Response{}, clawops.E(op, last.kind, last.reason,
		fmt.Errorf("%d models failed after %d attempts, last: %w", len(c.opts.Models), attempts, last.err))
}

// attempt performs one HTTP attempt with its own timeout, capturing status and headers.
func (c *Client) attempt(ctx context.Context, oreq openai.ChatCompletionRequest) (openai.ChatCompletionResponse, *attemptMeta, error) {
	actx, cancel := context.WithTimeout(ctx, c.opts.AttemptTimeout)
	defer cancel()
	meta := &attemptMeta{}
	resp, err := c.api.CreateChatCompletion(withMeta(actx, meta), oreq)
	return resp, meta, err
}

// backoff is Backoff·2^try capped at MaxBackoff, with "equal jitter": half fixed, half
// random, so that retries of many agents spread out but never collapse to zero.
func (c *Client) backoff(try int) time.Duration {
	d := c.opts.Backoff
	for i := 0; i < try && d < c.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.opts.MaxBackoff)
	half := d / 2
	return half + time.Duration(c.random()*float64(d-half))
}

func (c *Client) response(model string, req Request, resp openai.ChatCompletionResponse, attempts int) Response {
	ch := resp.Choices[0]
	msg := Message{Role: RoleAssistant, Content: ch.Message.Content}
	for i, tc := range ch.Message.ToolCalls {
		id := tc.ID
		if id == "" {
			// Some local servers omit ids; the loop needs one to pair results with calls.
			id = fmt.Sprintf("call_%d_%d", attempts, i)
		}
		msg.ToolCalls = append(msg.ToolCalls, ToolCall{ID: id, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
	}
	out := Response{
		Message:      msg,
		Model:        model,
		ServedModel:  resp.Model,
		FinishReason: string(ch.FinishReason),
		Usage:        Usage{Prompt: resp.Usage.PromptTokens, Completion: resp.Usage.CompletionTokens},
		Attempts:     attempts,
	}
	out.CostUSD = c.cost(model, resp.Model, out.Usage)
	if w, ok := c.checkContext(model, req); ok {
		out.Warning = &w
	}
	return out
}

func (c *Client) cost(model, served string, u Usage) float64 {
	if p, ok := c.opts.PriceTable.lookup(model, served); ok {
		return p.Cost(u)
	}
	c.mu.Lock()
	warned := c.unpriced[model]
	c.unpriced[model] = true
	c.mu.Unlock()
	if !warned {
		c.log.Warn("no price for model, counting its cost as 0", "model", model, "served_model", served)
	}
	return 0
}

func checkResponse(resp openai.ChatCompletionResponse) error {
	if len(resp.Choices) == 0 {
		return errNoChoices
	}
	return nil
}

var errNoChoices = errors.New("response has no choices")

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
