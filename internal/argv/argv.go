// Package argv splits the command lines of before-freeze commands into
// their arguments as a shell would, without running one: quotes and
// backslashes, no expansion, no pipelines. The CLI, the site's policy and
// the agent split them all the same way.
package argv

import (
	"fmt"

	"github.com/mattn/go-shellwords"
)

// Split splits line; key names the setting or flag in the error.
func Split(key, line string) ([]string, error) {
	args, err := shellwords.NewParser().Parse(line)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s %q does not parse: %v", key, line, err)
	case len(args) == 0:
		return nil, fmt.Errorf("%s %q: no command", key, line)
	}
	return args, nil
}
