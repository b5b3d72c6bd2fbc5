package proto

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestBackupReadParamsValidate(t *testing.T) {
	const p = "/var/lib/gf-clawnode/backups/openclaw-20261123T100000.000Z.tar.gz"
	for _, tc := range []struct {
		params BackupReadParams
		bad    string // "" means valid
	}{
		{BackupReadParams{Path: p, Offset: 0, Length: 1}, ""},
		{BackupReadParams{Path: p, Offset: 1 << 40, Length: MaxBackupChunk}, ""},
		{BackupReadParams{Path: "", Length: 1}, "clean absolute path"},
		{BackupReadParams{Path: "backups/x.tar.gz", Length: 1}, "clean absolute path"},
		{BackupReadParams{Path: "/a/../b", Length: 1}, "clean absolute path"},
		{BackupReadParams{Path: "/a//b", Length: 1}, "clean absolute path"},
		{BackupReadParams{Path: "/a/b/", Length: 1}, "clean absolute path"},
		{BackupReadParams{Path: "/a/b\x00", Length: 1}, "clean absolute path"},
		{BackupReadParams{Path: p, Offset: -1, Length: 1}, "negative"},
		{BackupReadParams{Path: p, Length: 0}, "between 1 and"},
		{BackupReadParams{Path: p, Length: -5}, "between 1 and"},
		{BackupReadParams{Path: p, Length: MaxBackupChunk + 1}, "between 1 and"},
	} {
		err := tc.params.Validate()
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%+v: got %v, want valid", tc.params, err)
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
			t.Errorf("%+v: got %v, want an error saying %q", tc.params, err, tc.bad)
		}
	}
}

// TestBackupChunkFitsAFrame encodes the largest backup.read answer as the node sends it
// (a node.invoke.result request whose payloadJSON string holds the base64 chunk) and checks
// that it stays under the hub's frame limit with room to spare.
func TestBackupChunkFitsAFrame(t *testing.T) {
	data := bytes.Repeat([]byte{0xff}, MaxBackupChunk)
	payload, err := json.Marshal(BackupReadResult{Data: data, Size: 1 << 40, EOF: false})
	if err != nil {
		t.Fatal(err)
	}
	id := strings.Repeat("i", MaxIDLen)
	f, err := NewRequest(id, MethodInvokeResult, InvokeResult{ID: id, NodeID: strings.Repeat("n", MaxIDLen), OK: true, PayloadJSON: string(payload)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxFrameBytes*3/4 {
		t.Errorf("frame of a full chunk: got %d bytes, want at most 3/4 of MaxFrameBytes (%d)", len(b), MaxFrameBytes*3/4)
	}
	t.Logf("a %d-byte chunk travels in a %d-byte frame (limit %d)", MaxBackupChunk, len(b), MaxFrameBytes)
	var back InvokeResult
	var req struct {
		Params json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal(b, &req); err != nil || UnmarshalStrict(req.Params, &back) != nil {
		t.Fatalf("frame does not decode: %v", err)
	}
	var res BackupReadResult
	if err := UnmarshalStrict(back.Result(), &res); err != nil || !bytes.Equal(res.Data, data) {
		t.Fatalf("payload does not decode strictly: %v", err)
	}
}
