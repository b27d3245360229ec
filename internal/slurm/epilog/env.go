// Package epilog is the Slurm epilog's side of freezing sessions when a
// job ends: it reads the environment slurmd gives the epilog, asks the
// node's agent to freeze the job's sessions (the agent's policy decides
// which), waits for them within a time budget and reports to the system
// log. It never fails: a failing epilog would drain the node.
package epilog

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/baicommit/baicommit/api"
)

// Env is what the epilog learns from slurmd's environment.
type Env struct {
	Job     string // SLURM_JOB_ID
	User    string // SLURM_JOB_UID, or SLURM_JOB_USER without it
	Node    string // SLURMD_NODENAME
	Exit    string // "EXIT:SIGNAL" (SLURM_JOB_EXIT_CODE2), "" if unknown
	Context string // SLURM_SCRIPT_CONTEXT
}

// EpilogContext is SLURM_SCRIPT_CONTEXT in a node's epilog.
const EpilogContext = "epilog_slurmd"

var (
	uidRE  = regexp.MustCompile(`^[0-9]{1,10}$`)
	userRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?$`)
)

// ErrNotEpilog is returned when the program runs outside a node's epilog.
var ErrNotEpilog = errors.New("not a Slurm epilog")

// ReadEnv reads the epilog environment through getenv (os.Getenv).
func ReadEnv(getenv func(string) string) (Env, error) {
	e := Env{
		Job:     getenv("SLURM_JOB_ID"),
		Node:    getenv("SLURMD_NODENAME"),
		Context: getenv("SLURM_SCRIPT_CONTEXT"),
	}
	if e.Context != "" && e.Context != EpilogContext {
		return e, fmt.Errorf("%w: SLURM_SCRIPT_CONTEXT is %q; configure this program as Epilog=, not as %s", ErrNotEpilog, e.Context, e.Context)
	}
	if e.Job == "" {
		return e, fmt.Errorf("%w: SLURM_JOB_ID is not set", ErrNotEpilog)
	}
	if !api.ValidJobID(e.Job) {
		return e, fmt.Errorf("SLURM_JOB_ID %q is not a job id", e.Job)
	}
	switch uid, name := getenv("SLURM_JOB_UID"), getenv("SLURM_JOB_USER"); {
	case uidRE.MatchString(uid):
		e.User = uid
	case userRE.MatchString(name):
		e.User = name
	default:
		return e, fmt.Errorf("neither SLURM_JOB_UID (%q) nor SLURM_JOB_USER (%q) names the job's user", uid, name)
	}
	e.Exit = exitStatus(getenv("SLURM_JOB_EXIT_CODE2"), getenv("SLURM_JOB_EXIT_CODE"))
	return e, nil
}

// exitStatus is the job's "EXIT:SIGNAL": Slurm's own string, else derived
// from the wait status in SLURM_JOB_EXIT_CODE, else "".
func exitStatus(code2, status string) string {
	if api.ValidJobExit(code2) {
		return code2
	}
	if ws, err := strconv.ParseUint(status, 10, 32); err == nil {
		return fmt.Sprintf("%d:%d", (ws>>8)&0xff, ws&0x7f)
	}
	return ""
}
