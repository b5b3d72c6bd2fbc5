package proto

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/gatewayforge/clawops"
)

// ShellMetacharacters are refused in every string of every command's params, and
// anywhere on an SSH command line, even though no command runs a shell: a string that
// needs one of them has no business reaching a node.
const ShellMetacharacters = ";|&$<>`'\"\\\n\r\x00(){}[]*?~!#"

// The SSH fallback runs a command of the node's allowlist over SSH when gf-clawnode is
// down. The gateway sends the line
//
//	gf-clawnode exec <command> [--<arg> <value>]...
//
// and the node's authorized_keys entry forces `gf-clawnode ssh-exec <node flags>`, which
// reads the line from SSH_ORIGINAL_COMMAND, checks it again, runs the command and prints
// one SSHResult as JSON. Both ends check the line against the table below: the command must
// be in it, every argument must be one it names and match its pattern, and no shell
// metacharacter may appear anywhere. config.apply is not in the table: a whole config
// cannot travel as an argument.

// SSHProgram and SSHVerb start every SSH command line.
const (
	SSHProgram = "gf-clawnode"
	SSHVerb    = "exec"
)

// SSHArg is an argument a command accepts on an SSH command line.
type SSHArg struct {
	Name    string         // --name on the line; the params key
	Pattern *regexp.Regexp // the whole value must match
	Int     bool           // the command receives it as a JSON number
}

var (
	tailArg  = SSHArg{Name: "tail", Pattern: regexp.MustCompile(`^[1-9][0-9]{0,3}$`), Int: true}
	imageArg = SSHArg{Name: "image", Pattern: regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._/:@-]{0,254}$`)}
)

// SSHArgs returns the arguments command accepts over SSH; false when it cannot run there.
func SSHArgs(command string) ([]SSHArg, bool) {
	switch command {
	case CmdHealth, CmdRestart, CmdMetrics, CmdInfo, CmdConfigGet, CmdBackup:
		return nil, true
	case CmdLogs:
		return []SSHArg{tailArg}, true
	case CmdUpgrade:
		return []SSHArg{imageArg}, true
	}
	return nil, false
}

const sshOp = "ssh command line"

func sshRefusal(code clawops.ReasonCode, format string, args ...any) error {
	return clawops.E(sshOp, clawops.KindDenied, code, fmt.Errorf(format, args...))
}

// SSHCommandLine builds the SSH command line for command with params (a flat JSON object
// of the command's SSH arguments, strings or integers). It refuses, as *clawops.Error:
// a command not in the SSH table (COMMAND_NOT_ALLOWLISTED), a shell metacharacter in any
// value (SHELL_METACHARACTER), an unknown argument or a value off its pattern
// (INVALID_PARAMS).
func SSHCommandLine(command string, params map[string]any) (string, error) {
	if strings.ContainsAny(command, ShellMetacharacters) {
		return "", sshRefusal(clawops.ReasonShellMetachar, "command name %q contains a shell metacharacter", command)
	}
	args, ok := SSHArgs(command)
	if !ok {
		return "", sshRefusal(clawops.ReasonNotAllowlisted, "command %q cannot run over SSH", command)
	}
	line := []string{SSHProgram, SSHVerb, command}
	for _, a := range args {
		v, present := params[a.Name]
		if !present {
			continue
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case int:
			s = strconv.Itoa(x)
		case int64:
			s = strconv.FormatInt(x, 10)
		case float64:
			s = strconv.FormatFloat(x, 'f', -1, 64)
		case json.Number:
			s = x.String()
		default:
			return "", sshRefusal(clawops.ReasonBadParams, "argument %s: want a string or a number", a.Name)
		}
		if strings.ContainsAny(s, ShellMetacharacters) {
			return "", sshRefusal(clawops.ReasonShellMetachar, "argument %s contains a shell metacharacter", a.Name)
		}
		if !a.Pattern.MatchString(s) {
			return "", sshRefusal(clawops.ReasonBadParams, "argument %s %q does not match %s", a.Name, s, a.Pattern)
		}
		line = append(line, "--"+a.Name, s)
	}
	for k := range params {
		if !hasArg(args, k) {
			if strings.ContainsAny(k, ShellMetacharacters) {
				return "", sshRefusal(clawops.ReasonShellMetachar, "argument name contains a shell metacharacter")
			}
			return "", sshRefusal(clawops.ReasonBadParams, "command %s takes no argument %q over SSH", command, k)
		}
	}
	return strings.Join(line, " "), nil
}

func hasArg(args []SSHArg, name string) bool {
	for _, a := range args {
		if a.Name == name {
			return true
		}
	}
	return false
}

// ParseSSHCommandLine checks line as SSHCommandLine would have built it and returns the
// command and its params JSON. Refusals are the same *clawops.Error codes.
func ParseSSHCommandLine(line string) (command string, paramsJSON []byte, err error) {
	if len(line) > 1024 {
		return "", nil, sshRefusal(clawops.ReasonMalformedRequest, "command line longer than 1024 bytes")
	}
	if strings.ContainsAny(line, ShellMetacharacters) {
		return "", nil, sshRefusal(clawops.ReasonShellMetachar, "command line contains a shell metacharacter")
	}
	f := strings.Fields(line)
	if len(f) < 3 || path.Base(f[0]) != SSHProgram || f[1] != SSHVerb {
		return "", nil, sshRefusal(clawops.ReasonMalformedRequest, "want %q", SSHProgram+" "+SSHVerb+" <command> [--arg value]...")
	}
	command = f[2]
	args, ok := SSHArgs(command)
	if !ok {
		return "", nil, sshRefusal(clawops.ReasonNotAllowlisted, "command %q cannot run over SSH", command)
	}
	params := map[string]any{}
	rest := f[3:]
	for len(rest) > 0 {
		name, isFlag := strings.CutPrefix(rest[0], "--")
		if !isFlag || len(rest) < 2 {
			return "", nil, sshRefusal(clawops.ReasonBadParams, "want --name value pairs after the command")
		}
		var arg *SSHArg
		for i := range args {
			if args[i].Name == name {
				arg = &args[i]
			}
		}
		if arg == nil {
			return "", nil, sshRefusal(clawops.ReasonBadParams, "command %s takes no argument %q over SSH", command, name)
		}
		if _, dup := params[name]; dup {
			return "", nil, sshRefusal(clawops.ReasonBadParams, "argument %s given twice", name)
		}
		v := rest[1]
		if !arg.Pattern.MatchString(v) {
			return "", nil, sshRefusal(clawops.ReasonBadParams, "argument %s %q does not match %s", name, v, arg.Pattern)
		}
		if arg.Int {
			n, err := strconv.Atoi(v)
			if err != nil {
				return "", nil, sshRefusal(clawops.ReasonBadParams, "argument %s: %v", name, err)
			}
			params[name] = n
		} else {
			params[name] = v
		}
		rest = rest[2:]
	}
	b, err := json.Marshal(params)
	if err != nil {
		return "", nil, sshRefusal(clawops.ReasonBadParams, "encode params: %v", err)
	}
	return command, b, nil
}

// SSHResult is what `gf-clawnode ssh-exec` prints: the command's result, or its error
// with the same codes an invoke result carries.
type SSHResult struct {
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *InvokeError    `json:"error,omitempty"`
}
