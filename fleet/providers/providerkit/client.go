package providerkit

import "net/http"

// BearerClient returns a client that sends token as "Authorization: Bearer" on a clone
// of each request: a copy of hc, or a client with DefaultTimeout when hc is nil. hc itself
// is never changed, so the token cannot leak into the caller's other requests. observe,
// when not nil, sees each answer with the request it answers.
func BearerClient(hc *http.Client, token string, observe func(*http.Request, *http.Response)) *http.Client {
	var out http.Client
	if hc != nil {
		out = *hc
	} else {
		out.Timeout = DefaultTimeout
	}
	base := out.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	out.Transport = &bearer{token: token, base: base, observe: observe}
	return &out
}

type bearer struct {
	token   string
	base    http.RoundTripper
	observe func(*http.Request, *http.Response)
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	r2.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := b.base.RoundTrip(r2)
	if resp != nil && b.observe != nil {
		b.observe(r, resp)
	}
	return resp, err
}
