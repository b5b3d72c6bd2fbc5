package daemon

import (
	"context"
	"strings"
	"testing"

	"github.com/gatewayforge/clawops"
)

func TestLogsParamsDecode(t *testing.T) {
	cmd := Handle(func(_ context.Context, p LogsParams) (any, error) { return p, nil })
	for _, tc := range []struct {
		in       string
		want     clawops.ReasonCode // "" means accepted
		wantTail int                // 0 means absent
	}{
		{``, "", 0},
		{`null`, "", 0},
		{`{}`, "", 0},
		{` {"tail": 10} `, "", 10},
		{`{"tail":1}`, "", 1},
		{`{"tail":5000}`, "", 5000},
		{`{"tail":0}`, clawops.ReasonBadParams, 0},
		{`{"tail":5001}`, clawops.ReasonBadParams, 0},
		{`{"tail":-3}`, clawops.ReasonBadParams, 0},
		{`{"tail":2.5}`, clawops.ReasonBadParams, 0},
		{`{"tail":"10"}`, clawops.ReasonBadParams, 0},
		{`{"tail":"1;rm -rf /"}`, clawops.ReasonShellMetachar, 0},
		{`{"tail":10,"path":"/etc/passwd"}`, clawops.ReasonBadParams, 0},
		{`{"Tail":10}`, clawops.ReasonBadParams, 0},
		{`{"tail":1,"tail":2}`, clawops.ReasonBadParams, 0},
		{`{"a|b":1}`, clawops.ReasonShellMetachar, 0},
		{`{"x":["ok","$(id)"]}`, clawops.ReasonShellMetachar, 0},
		{`{"x":{"y":"a\nb"}}`, clawops.ReasonShellMetachar, 0},
		{`[]`, clawops.ReasonBadParams, 0},
		{`"tail"`, clawops.ReasonBadParams, 0},
		{`{"tail":`, clawops.ReasonBadParams, 0},
		{`{} {}`, clawops.ReasonBadParams, 0},
	} {
		t.Run(tc.in, func(t *testing.T) {
			p, err := cmd.decode([]byte(tc.in))
			if got := clawops.ReasonOf(err); got != tc.want {
				t.Fatalf("decode(%s) reason = %q (err %v), want %q", tc.in, got, err, tc.want)
			}
			if err != nil {
				if clawops.KindOf(err) != clawops.KindInvalid {
					t.Errorf("kind = %v, want invalid", clawops.KindOf(err))
				}
				return
			}
			lp := p.(LogsParams)
			gotTail := 0
			if lp.Tail != nil {
				gotTail = *lp.Tail
			}
			if gotTail != tc.wantTail {
				t.Errorf("tail = %d, want %d", gotTail, tc.wantTail)
			}
		})
	}
}

func TestNoParamsRejectsFields(t *testing.T) {
	cmd := Handle(func(context.Context, NoParams) (any, error) { return nil, nil })
	if _, err := cmd.decode([]byte(`{}`)); err != nil {
		t.Errorf("decode({}) = %v", err)
	}
	if _, err := cmd.decode([]byte(`{"force":true}`)); clawops.ReasonOf(err) != clawops.ReasonBadParams {
		t.Errorf("decode({force}) = %v, want INVALID_PARAMS", err)
	}
}

func TestAllowlist(t *testing.T) {
	a := NewAllowlist()
	c := Handle(func(context.Context, NoParams) (any, error) { return "ok", nil })
	a.Register("b.cmd", c)
	a.Register("a.cmd", c)
	if got := strings.Join(a.Names(), ","); got != "a.cmd,b.cmd" {
		t.Errorf("Names = %s, want a.cmd,b.cmd", got)
	}
	if _, ok := a.Lookup("c.cmd"); ok {
		t.Error("Lookup(c.cmd) found a command that was never registered")
	}
	for name, fn := range map[string]func(){
		"duplicate":  func() { a.Register("a.cmd", c) },
		"empty name": func() { a.Register("", c) },
		"pipe name":  func() { a.Register("a|b", c) },
		"no handler": func() { a.Register("z.cmd", Command{}) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Register did not panic")
				}
			}()
			fn()
		})
	}
}

func TestStandardCommandNames(t *testing.T) {
	a := StandardCommands(&fakeRuntime{}, NewHealthChecker("", nil, 0, nil), NewSampler("", ""))
	want := "backup.create,backup.read,config.apply,config.get,openclaw.health,openclaw.logs,openclaw.restart,openclaw.upgrade,vps.info,vps.metrics"
	if got := strings.Join(a.Names(), ","); got != want {
		t.Errorf("Names = %s, want %s", got, want)
	}
}

// fakeRuntime is a Runtime that records calls.
type fakeRuntime struct {
	restarts, logs int
}

func (f *fakeRuntime) Restart(context.Context) error { f.restarts++; return nil }
func (f *fakeRuntime) Logs(_ context.Context, n int) ([]string, error) {
	f.logs++
	return []string{"a", "b"}[:min(n, 2)], nil
}
func (f *fakeRuntime) Status(context.Context) (string, error) { return StateRunning, nil }
