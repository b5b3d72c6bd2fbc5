package fleet

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatewayforge/clawops"
)

// S3Store keeps archives in a bucket of an S3-compatible object store (AWS S3, MinIO,
// Ceph RGW, Cloudflare R2, Hetzner Object Storage, ...), using path-style URLs and AWS
// Signature Version 4. The payload's SHA-256 is signed, so the store itself refuses a
// body that differs from the backup the node described.
type S3Store struct {
	Endpoint  string // e.g. https://fsn1.your-objectstorage.com
	Bucket    string
	Region    string // e.g. us-east-1; "auto" for R2
	AccessKey string
	SecretKey string // a secret: never logged
	Prefix    string // optional key prefix, e.g. "clawops/"
	Client    *http.Client
	Clock     clawops.Clock
}

var _ ArchiveStore = (*S3Store)(nil)

// Put uploads r as Prefix+key with one signed PUT.
func (s *S3Store) Put(ctx context.Context, key string, r io.Reader, size int64, sha256hex string) (string, error) {
	if s.Endpoint == "" || s.Bucket == "" || s.Region == "" || s.AccessKey == "" || s.SecretKey == "" {
		return "", errors.New("s3 archive: endpoint, bucket, region, access key and secret key are all required")
	}
	key = s.Prefix + key
	if !archiveKeyRE.MatchString(key) || strings.Contains(key, "..") {
		return "", fmt.Errorf("s3 archive: key %.200q is not a safe object key", key)
	}
	if !sha256RE.MatchString(sha256hex) {
		return "", errors.New("s3 archive: sha256 must be 64 lowercase hex digits")
	}
	u, err := url.Parse(strings.TrimRight(s.Endpoint, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("s3 archive: endpoint %q: want http(s)://host", s.Endpoint)
	}
	u.Path = u.Path + "/" + s.Bucket + "/" + key
	u.RawPath = s3EscapePath(u.Path)
	h := sha256.New()
	body := io.TeeReader(ctxReader{ctx, io.LimitReader(r, size)}, h)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), body)
	if err != nil {
		return "", fmt.Errorf("s3 archive: %w", err)
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	now := clawops.ClockOrSystem(s.Clock).Now()
	SignV4(req, sha256hex, s.AccessKey, s.SecretKey, s.Region, "s3", now)
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("s3 archive: put %s: %w", key, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("s3 archive: put %s: %w", key, s3Error(resp))
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha256hex {
		// A store that ignored the signed payload hash: do not keep a wrong archive.
		s.delete(ctx, u.String())
		return "", fmt.Errorf("s3 archive: put %s: sent sha256 %s, want %s", key, got, sha256hex)
	}
	return "s3://" + s.Bucket + "/" + key, nil
}

func (s *S3Store) delete(ctx context.Context, rawURL string) {
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodDelete, rawURL, nil)
	if err != nil {
		return
	}
	SignV4(req, emptySHA256, s.AccessKey, s.SecretKey, s.Region, "s3", clawops.ClockOrSystem(s.Clock).Now())
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
	}
}

const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// s3Error reads an S3 error document: <Error><Code>..</Code><Message>..</Message></Error>.
func s3Error(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
	var doc struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	if xml.Unmarshal(b, &doc) == nil && doc.Code != "" {
		return fmt.Errorf("HTTP %d %s: %s", resp.StatusCode, doc.Code, truncate(doc.Message, 300))
	}
	return fmt.Errorf("HTTP %d: %s", resp.StatusCode, truncate(strings.TrimSpace(string(b)), 300))
}

// s3EscapePath URI-encodes every byte of p except the unreserved characters and '/', as
// SigV4's canonical URI for S3 requires.
func s3EscapePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("-._~/", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// SignV4 signs req with AWS Signature Version 4 for service in region at t: it sets
// x-amz-date and x-amz-content-sha256 (payloadHash) and the Authorization header, signing
// host and every header already on req. The query string, if any, must already be in
// canonical order.
func SignV4(req *http.Request, payloadHash, accessKey, secretKey, region, service string, t time.Time) {
	t = t.UTC()
	amzDate := t.Format("20060102T150405Z")
	day := t.Format("20060102")
	req.Header.Set("X-Amz-Date", amzDate)
	req.Header.Set("X-Amz-Content-Sha256", payloadHash)

	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	headers := map[string]string{"host": host}
	for k, vs := range req.Header {
		lk := strings.ToLower(k)
		vals := make([]string, len(vs))
		for i, v := range vs {
			vals[i] = strings.Join(strings.Fields(v), " ")
		}
		headers[lk] = strings.Join(vals, ",")
	}
	names := make([]string, 0, len(headers))
	for k := range headers {
		if k == "authorization" || k == "user-agent" {
			continue
		}
		names = append(names, k)
	}
	slices.Sort(names)
	var canonHeaders bytes.Buffer
	for _, k := range names {
		canonHeaders.WriteString(k + ":" + headers[k] + "\n")
	}
	signed := strings.Join(names, ";")
	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	canonical := strings.Join([]string{req.Method, path, req.URL.RawQuery, canonHeaders.String(), signed, payloadHash}, "\n")
	scope := day + "/" + region + "/" + service + "/aws4_request"
	sum := sha256.Sum256([]byte(canonical))
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	key := hmacSHA256([]byte("AWS4"+secretKey), day)
	key = hmacSHA256(key, region)
	key = hmacSHA256(key, service)
	key = hmacSHA256(key, "aws4_request")
	sig := hex.EncodeToString(hmacSHA256(key, toSign))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+accessKey+"/"+scope+
		", SignedHeaders="+signed+", Signature="+sig)
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}
