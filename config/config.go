// Package config is the one typed configuration of the ClawOps gateway.
//
// A Config is built in three layers, each overriding the one before: the defaults
// (Default), an optional YAML file, and CLAWOPS_* environment variables. The file is
// decoded strictly: an unknown key is an error naming the key path and the line, with a
// suggestion when a known key is close. The result is then checked by Validate, whose
// messages name the key and say what to do.
//
// Everything is driven by the struct tags of Config: the YAML keys (`yaml:"..."`), the
// environment variable names (CLAWOPS_ + the upper-cased key path joined by "_", or
// `env:"-"` for keys that cannot come from the environment) and the secrets
// (`secret:"true"`, never printed). Adding a section is adding one field whose type is a
// struct with those tags (and its defaults in Default); if that type has a
// `validate(path string) []*Error` method, Validate calls it.
//
// Secrets never live inline in the file: API tokens name an environment variable or a
// file (ResolveTokens reads them), and a database DSN holding a password must come from
// CLAWOPS_DATABASE_DSN or database.dsn_file.
package config

import (
	"os"
	"path/filepath"
	"time"
)

// Config is the whole gateway configuration. The zero value is not useful; start from
// Default or Load.
type Config struct {
	// Listen is the host:port the HTTP API, console and node endpoint listen on.
	Listen string `yaml:"listen"`
	// PublicURL is the WebSocket URL nodes dial. Load derives it from Listen when empty.
	PublicURL string `yaml:"public_url"`
	// DataDir holds the SQLite database and other local state.
	DataDir    string     `yaml:"data_dir"`
	Log        Log        `yaml:"log"`
	Database   Database   `yaml:"database"`
	Auth       Auth       `yaml:"auth"`
	Approvals  Approvals  `yaml:"approvals"`
	Nodes      Nodes      `yaml:"nodes"`
	Fleet      Fleet      `yaml:"fleet"`
	Demo       Demo       `yaml:"demo"`
	Channels   Channels   `yaml:"channels"`
	Governance Governance `yaml:"governance"`
	LLM        LLM        `yaml:"llm"`
	Agents     Agents     `yaml:"agents"`
	Cluster    Cluster    `yaml:"cluster"`
}

// Log configures the gateway's structured logs.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// Database says where state is kept.
type Database struct {
	// Driver is sqlite or postgres.
	Driver string `yaml:"driver"`
	// DSN is the connection string: a file path for sqlite (empty means
	// <data_dir>/clawops.db), a URL or key=value string for postgres. It may hold a
	// password, so it is a secret: it is never printed, and a DSN with a password must come
	// from CLAWOPS_DATABASE_DSN or DSNFile rather than the config file.
	DSN string `yaml:"dsn" secret:"true"`
	// DSNFile names a file whose content is the DSN.
	DSNFile string `yaml:"dsn_file"`
}

// Auth configures who may call the API.
type Auth struct {
	// Tokens are the API bearer tokens. Their secrets are read by ResolveTokens.
	Tokens []TokenRef `yaml:"tokens" env:"-"`
}

// TokenRef names one API token: who it belongs to, the role it grants and where its secret
// is kept. Exactly one of TokenEnv and TokenFile is set.
type TokenRef struct {
	Identity  string `yaml:"identity"`
	Role      string `yaml:"role"`
	TokenEnv  string `yaml:"token_env"`
	TokenFile string `yaml:"token_file"`
}

// Approvals configures approval requests.
type Approvals struct {
	// TTL is how long an approval stays pending before it expires (1m..24h).
	TTL time.Duration `yaml:"ttl"`
}

// Nodes configures the gateway's side of the gf-clawnode protocol.
type Nodes struct {
	// TickInterval is how often the health monitor looks at the fleet.
	TickInterval time.Duration `yaml:"tick_interval"`
	// HeartbeatInterval is how often nodes are asked to send a heartbeat.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// HeartbeatTimeout is how long without a heartbeat before a node counts as offline.
	HeartbeatTimeout time.Duration `yaml:"heartbeat_timeout"`
	// JoinTokenTTL is how long a one-time join token may be used.
	JoinTokenTTL time.Duration `yaml:"join_token_ttl"`
	// InvokeTimeout bounds one command sent to a node.
	InvokeTimeout time.Duration `yaml:"invoke_timeout"`
	// AllowPublicNodeListener permits serving the node endpoint on a non-loopback,
	// non-tailnet address. Off by default: nodes are meant to dial over the tailnet.
	AllowPublicNodeListener bool `yaml:"allow_public_node_listener"`
}

// Fleet configures the fleet's providers.
type Fleet struct {
	Local LocalProvider `yaml:"local"`
	// Clouds are the cloud providers new servers may be created at.
	Clouds []CloudProvider `yaml:"clouds" env:"-"`
	// Bootstrap is what every new cloud server installs (rendered into cloud-init).
	Bootstrap Bootstrap `yaml:"bootstrap"`
	// Archive is where a teardown keeps the workspace of each server before deleting it.
	Archive Archive `yaml:"archive"`
}

// Archive says where teardown stores workspace archives: a folder on the gateway's machine
// (Dir) or an S3-compatible bucket (S3), not both. With neither, Load derives
// Dir = <data_dir>/archives: a teardown always keeps the workspace unless asked not to.
type Archive struct {
	// Dir is a folder on this machine; archives go to <dir>/<account>/.
	Dir string `yaml:"dir"`
	// S3 is a bucket of any S3-compatible store (AWS S3, MinIO, Ceph, R2, Hetzner, ...).
	S3 S3Archive `yaml:"s3"`
}

// S3Archive is a bucket for workspace archives. Its keys are secrets, read from the
// environment variable or the file each names, never written in the config.
type S3Archive struct {
	// Endpoint is the store's http(s) URL, e.g. https://fsn1.your-objectstorage.com;
	// requests are path-style (<endpoint>/<bucket>/<key>), signed with AWS Signature V4.
	Endpoint string `yaml:"endpoint"`
	Bucket   string `yaml:"bucket"`
	// Region is the signing region, e.g. us-east-1 or eu-central (auto for Cloudflare R2).
	Region string `yaml:"region"`
	// Prefix starts every object key, e.g. clawops/ (optional).
	Prefix string `yaml:"prefix"`
	// AccessKeyEnv or AccessKeyFile hold the access key ID; SecretKeyEnv or SecretKeyFile
	// the secret access key.
	AccessKeyEnv  string `yaml:"access_key_env"`
	AccessKeyFile string `yaml:"access_key_file"`
	SecretKeyEnv  string `yaml:"secret_key_env"`
	SecretKeyFile string `yaml:"secret_key_file"`
}

// IsSet reports whether any s3 key is set.
func (s S3Archive) IsSet() bool { return s != S3Archive{} }

// CloudProvider is one cloud account.
type CloudProvider struct {
	// Name is hetzner, digitalocean or vultr.
	Name string `yaml:"name"`
	// TokenEnv or TokenFile hold the API token (a secret).
	TokenEnv  string `yaml:"token_env"`
	TokenFile string `yaml:"token_file"`
	// Endpoint overrides the API URL (a proxy, a test server); empty: the provider's own.
	Endpoint string `yaml:"endpoint"`
	// Image is the base image, e.g. debian-12 (Vultr: os:<id>, snapshot:<uuid>).
	Image string `yaml:"image"`
	// SSHKeys are the provider's key IDs added to every server, for the SSH fallback.
	SSHKeys []string `yaml:"ssh_keys"`
}

// Bootstrap configures what new cloud servers install.
type Bootstrap struct {
	// ClawnodeURL is an https URL of the gf-clawnode binary; ClawnodeSHA256 its hex SHA-256.
	ClawnodeURL    string `yaml:"clawnode_url"`
	ClawnodeSHA256 string `yaml:"clawnode_sha256"`
	// OpenClawImage is the pinned OpenClaw image (a tag or digest, never latest).
	OpenClawImage string `yaml:"openclaw_image"`
	// TailscaleKeyEnv or TailscaleKeyFile hold the tailnet auth key new servers join with.
	TailscaleKeyEnv  string `yaml:"tailscale_key_env"`
	TailscaleKeyFile string `yaml:"tailscale_key_file"`
}

// LocalProvider configures the provider that runs instances on this machine.
type LocalProvider struct {
	// NodeBinary is the gf-clawnode executable to start for each instance.
	NodeBinary string `yaml:"node_binary"`
	// Runtime is process (gf-clawnode and a stand-in gateway as processes) or docker.
	Runtime string `yaml:"runtime"`
	// ComposeDir is where compose projects are written when Runtime is docker. Load
	// derives <data_dir>/compose when empty.
	ComposeDir string `yaml:"compose_dir"`
}

// LLM names the OpenAI-compatible model endpoint the agents use. With no base_url the team
// runs without a model: slash commands, code-driven healing and template briefings.
type LLM struct {
	// BaseURL is the API root with its version path, e.g. https://api.openai.com/v1 or
	// http://127.0.0.1:11434/v1 (Ollama).
	BaseURL string `yaml:"base_url"`
	// APIKeyEnv or APIKeyFile hold the API key (a secret; local servers may need none).
	APIKeyEnv  string `yaml:"api_key_env"`
	APIKeyFile string `yaml:"api_key_file"`
	// Models is the failover list, the first the primary.
	Models []string `yaml:"models"`
	// Prices give the cost per million input and output tokens, for run costs and budgets.
	Prices []ModelPrice `yaml:"prices" env:"-"`
}

// ModelPrice is one model's price in US dollars per million tokens.
type ModelPrice struct {
	Model         string  `yaml:"model"`
	InputPerMTok  float64 `yaml:"input_per_mtok"`
	OutputPerMTok float64 `yaml:"output_per_mtok"`
}

// Agents configures the agent team.
type Agents struct {
	// Workspace is a folder whose souls/ and skills/ override the shipped ones; "" uses the
	// shipped ones only.
	Workspace string `yaml:"workspace"`
	// MemoryDir keeps each agent's MEMORY.md and daily notes; Load derives
	// <data_dir>/memory when empty.
	MemoryDir string `yaml:"memory_dir"`
	// Schedules turns the cron triggers (sweeps, cost analysis, briefings) on or off.
	Schedules bool `yaml:"schedules"`
}

// Governance configures the gate beyond approval lifetimes.
type Governance struct {
	// Environment feeds the risk score: production (default) or staging.
	Environment string `yaml:"environment"`
	// SecondFactorFrom makes approving an action of this risk class or above (low, medium,
	// high, critical) need a TOTP code entered in the web console: a chat button alone is
	// refused. Empty: never. Every approver then needs a governance.totp entry.
	SecondFactorFrom string `yaml:"second_factor_from"`
	// TOTP holds each approver's TOTP secret (base32, as enrolled in their authenticator app).
	TOTP []TOTPRef `yaml:"totp" env:"-"`
}

// TOTPRef names where an approver's TOTP secret is kept.
type TOTPRef struct {
	Identity   string `yaml:"identity"`
	SecretEnv  string `yaml:"secret_env"`
	SecretFile string `yaml:"secret_file"`
}

// Channels configures the chat adapters besides the web console, and who may use them.
type Channels struct {
	// Adapters are built by the gateway's channel registry, in order.
	Adapters []ChannelAdapter `yaml:"adapters" env:"-"`
	// AllowFrom maps a platform sender to a ClawOps identity and role. Messages and button
	// presses from anyone else are ignored and audited.
	AllowFrom []AllowFrom `yaml:"allow_from" env:"-"`
}

// ChannelAdapter is one adapter to build.
type ChannelAdapter struct {
	// Type is the adapter's registered name: channels.telegram, channels.slack,
	// channels.discord or channels.whatsapp.
	Type string `yaml:"type"`
	// Settings are the adapter's own settings (see docs/channels.md); the adapter decodes
	// them strictly. Secrets inside are references ({env: NAME} or {file: PATH}), never values.
	Settings Settings `yaml:"settings"`
}

// Settings is a YAML mapping kept as JSON for the component that owns its schema.
type Settings []byte

// AllowFrom is one allowed sender.
type AllowFrom struct {
	Channel  string `yaml:"channel"`  // the adapter's channel name, e.g. telegram
	Sender   string `yaml:"sender"`   // platform user id, or an E.164 phone number for WhatsApp
	Identity string `yaml:"identity"` // the ClawOps identity, e.g. omar
	Role     string `yaml:"role"`     // admin, approver, operator or viewer
}

// Demo configures `clawops demo`.
type Demo struct {
	// Pairs is how many primary/standby pairs the demo provisions.
	Pairs int `yaml:"pairs"`
}

// Default returns the built-in configuration: a gateway on 127.0.0.1:8080 with SQLite in
// ./.data, ready for `clawops demo` without a file.
func Default() *Config {
	return &Config{
		Listen:     "127.0.0.1:8080",
		DataDir:    "./.data",
		Log:        Log{Level: "info", Format: "text"},
		Database:   Database{Driver: "sqlite"},
		Approvals:  Approvals{TTL: 30 * time.Minute},
		Governance: Governance{Environment: "production"},
		Agents:     Agents{Schedules: true},
		Cluster:    Cluster{LeaseTTL: 15 * time.Second},
		Nodes: Nodes{
			TickInterval:      15 * time.Second,
			HeartbeatInterval: 10 * time.Second,
			HeartbeatTimeout:  45 * time.Second,
			JoinTokenTTL:      time.Hour,
			InvokeTimeout:     30 * time.Second,
		},
		Fleet: Fleet{Local: LocalProvider{NodeBinary: defaultNodeBinary(), Runtime: "process"}},
		Demo:  Demo{Pairs: 3},
	}
}

// defaultNodeBinary is gf-clawnode next to the running executable, so `go build -o bin/`
// of both commands just works; it falls back to a PATH lookup by name.
func defaultNodeBinary() string {
	exe, err := os.Executable()
	if err != nil {
		return "gf-clawnode"
	}
	return filepath.Join(filepath.Dir(exe), "gf-clawnode")
}

// fillDerived sets the values that default to something computed from other keys.
func (c *Config) fillDerived() {
	if c.PublicURL == "" {
		c.PublicURL = DerivePublicURL(c.Listen)
	}
	if c.Fleet.Local.ComposeDir == "" && c.DataDir != "" {
		c.Fleet.Local.ComposeDir = filepath.Join(c.DataDir, "compose")
	}
	if c.Fleet.Archive.Dir == "" && !c.Fleet.Archive.S3.IsSet() && c.DataDir != "" {
		c.Fleet.Archive.Dir = filepath.Join(c.DataDir, "archives")
	}
	if c.Agents.MemoryDir == "" && c.DataDir != "" {
		c.Agents.MemoryDir = filepath.Join(c.DataDir, "memory")
	}
}
