package policy

import (
	"path/filepath"
	"strings"
)

// UserDir is the directory below which all of a user's archives go: the
// save path cut before its first component that depends on anything but
// the user ({user}, {uid}), with those expanded. For "/srv/{user}/{date}"
// it is /srv/USER; for "/srv/{node}/{user}" it is /srv. It returns "" if
// the user's name or uid cannot be used in a path.
func (p *Policy) UserDir(user, uid string) string {
	v := Vars{User: user, UID: uid}
	dir := "/"
	for _, comp := range strings.Split(strings.TrimPrefix(p.SavePath, "/"), "/") {
		if comp == "" {
			continue
		}
		rest := strings.NewReplacer("{user}", "", "{uid}", "").Replace(comp)
		if strings.ContainsRune(rest, '{') {
			break
		}
		val, err := expand(comp, v)
		if err != nil {
			return ""
		}
		dir = filepath.Join(dir, val)
	}
	return dir
}
