package fleet

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	awsExampleKey    = "AKIAIOSFODNN7EXAMPLE"
	awsExampleSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

// TestSignV4Examples checks the signer against the worked examples of AWS's "Signature
// Calculations for the Authorization Header: Transferring Payload in a Single Chunk".
func TestSignV4Examples(t *testing.T) {
	at := time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, method, url string
		headers           map[string]string
		payload           string
		want              string
	}{
		{"GET object", "GET", "https://examplebucket.s3.amazonaws.com/test.txt",
			map[string]string{"Range": "bytes=0-9"}, "",
			"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, " +
				"SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, " +
				"Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"},
		{"PUT object", "PUT", "https://examplebucket.s3.amazonaws.com/test$file.text",
			map[string]string{"Date": "Fri, 24 May 2013 00:00:00 GMT", "X-Amz-Storage-Class": "REDUCED_REDUNDANCY"},
			"Welcome to Amazon S3.",
			"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, " +
				"SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, " +
				"Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.RawPath = s3EscapePath(req.URL.Path)
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			SignV4(req, sha([]byte(tc.payload)), awsExampleKey, awsExampleSecret, "us-east-1", "s3", at)
			if got := req.Header.Get("Authorization"); got != tc.want {
				t.Errorf("Authorization:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// fakeS3 is an S3-compatible server for one bucket: it checks each PUT's signature by
// signing the request it received again, and the payload against x-amz-content-sha256,
// as S3 does.
type fakeS3 struct {
	mu      sync.Mutex
	objects map[string][]byte
	fail    string // an error code to answer every request with
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, code, msg string) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>`+code+`</Code><Message>`+msg+`</Message></Error>`)
	}
	if f.fail != "" {
		fail(http.StatusServiceUnavailable, f.fail, "try later")
		return
	}
	body, _ := io.ReadAll(r.Body)
	check, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	check.URL.RawPath = r.URL.RawPath
	for _, k := range []string{"Content-Type"} {
		check.Header.Set(k, r.Header.Get(k))
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		fail(http.StatusForbidden, "AccessDenied", "no date")
		return
	}
	SignV4(check, r.Header.Get("X-Amz-Content-Sha256"), awsExampleKey, awsExampleSecret, "eu-central", "s3", at)
	if check.Header.Get("Authorization") != r.Header.Get("Authorization") {
		fail(http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match")
		return
	}
	if r.Method == http.MethodPut && sha(body) != r.Header.Get("X-Amz-Content-Sha256") {
		fail(http.StatusBadRequest, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.Method {
	case http.MethodPut:
		f.objects[r.URL.Path] = body
		w.Header().Set("ETag", `"x"`)
	case http.MethodDelete:
		delete(f.objects, r.URL.Path)
		w.WriteHeader(http.StatusNoContent)
	}
}

func TestS3Store(t *testing.T) {
	fake := &fakeS3{objects: map[string][]byte{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	store := &S3Store{Endpoint: srv.URL, Bucket: "archives", Region: "eu-central", AccessKey: awsExampleKey,
		SecretKey: awsExampleSecret, Prefix: "clawops/", Client: srv.Client()}
	ctx := context.Background()
	body := []byte("workspace tarball")
	loc, err := store.Put(ctx, "demo1/demo1-sby-20261103T090000Z-backup.tar.gz", bytes.NewReader(body), int64(len(body)), sha(body))
	if err != nil {
		t.Fatal(err)
	}
	if loc != "s3://archives/clawops/demo1/demo1-sby-20261103T090000Z-backup.tar.gz" {
		t.Errorf("location: got %s", loc)
	}
	if got := fake.objects["/archives/clawops/demo1/demo1-sby-20261103T090000Z-backup.tar.gz"]; !bytes.Equal(got, body) {
		t.Errorf("stored: got %q", got)
	}

	// A body that is not what the node described is refused by the store.
	_, err = store.Put(ctx, "demo1/other", bytes.NewReader([]byte("tampered tarball!")), int64(len(body)), sha(body))
	if err == nil || !strings.Contains(err.Error(), "XAmzContentSHA256Mismatch") {
		t.Errorf("tampered body: got %v, want XAmzContentSHA256Mismatch", err)
	}
	// A wrong secret is refused with the store's own words.
	bad := *store
	bad.SecretKey = "wrong"
	_, err = bad.Put(ctx, "demo1/x", bytes.NewReader(body), int64(len(body)), sha(body))
	if err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("bad secret: got %v, want SignatureDoesNotMatch without the secret", err)
	}
	fake.fail = "SlowDown"
	_, err = store.Put(ctx, "demo1/y", bytes.NewReader(body), int64(len(body)), sha(body))
	if err == nil || !strings.Contains(err.Error(), "503 SlowDown") {
		t.Errorf("unavailable: got %v", err)
	}
	fake.fail = ""
	for _, tc := range []struct {
		name  string
		store S3Store
		key   string
	}{
		{"no bucket", S3Store{Endpoint: srv.URL, Region: "r", AccessKey: "a", SecretKey: "s"}, "a/b"},
		{"bad endpoint", S3Store{Endpoint: "ftp://x", Bucket: "b", Region: "r", AccessKey: "a", SecretKey: "s"}, "a/b"},
		{"bad key", *store, "../etc/passwd"},
	} {
		if _, err := tc.store.Put(ctx, tc.key, bytes.NewReader(body), int64(len(body)), sha(body)); err == nil {
			t.Errorf("%s: got nil error", tc.name)
		}
	}
	if len(fake.objects) != 1 {
		t.Errorf("objects: got %d, want only the first", len(fake.objects))
	}
}
