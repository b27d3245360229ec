package policy

import "fmt"

// Values of epilog_freeze: which sessions of a Slurm job are frozen when
// the job ends on a node.
const (
	// EpilogLabelled freezes the sessions the user opted in:
	// labelled baicommit.job=<job> and baicommit.freeze=on-exit.
	EpilogLabelled = "labelled"
	// EpilogJob freezes every session labelled baicommit.job=<job>,
	// except those labelled baicommit.freeze=never or on-signal.
	EpilogJob = "job"
	// EpilogOff freezes nothing when a job ends.
	EpilogOff = "off"
)

func (p *Policy) validateEpilog() error {
	switch p.EpilogFreeze {
	case "":
		p.EpilogFreeze = EpilogLabelled
		return nil
	case EpilogLabelled, EpilogJob, EpilogOff:
		return nil
	}
	return fmt.Errorf("epilog_freeze %q: want %q (sessions labelled baicommit.freeze=on-exit), %q (every session of the job) or %q",
		p.EpilogFreeze, EpilogLabelled, EpilogJob, EpilogOff)
}
