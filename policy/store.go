package policy

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/baicommit/baicommit/api"
)

// validateStore checks format, formats and store_path.
func (p *Policy) validateStore() error {
	if len(p.Formats) == 0 {
		p.Formats = api.AllFormats()
	}
	for _, f := range p.Formats {
		if !slices.Contains(api.AllFormats(), f) {
			return fmt.Errorf("formats: %q is not one of %v", f, api.AllFormats())
		}
	}
	if p.Format == "" {
		p.Format = api.FormatArchive
	}
	if !slices.Contains(p.Formats, p.Format) {
		return fmt.Errorf("format %q: want one of formats %v", p.Format, p.Formats)
	}
	if p.StorePath == "" {
		return nil
	}
	if !filepath.IsAbs(p.StorePath) || filepath.Clean(p.StorePath) != p.StorePath {
		return fmt.Errorf("store_path %q must be a clean absolute path", p.StorePath)
	}
	if _, _, err := p.StoreDir(Vars{User: "user", UID: "1000", Group: "group"}); err != nil {
		return err
	}
	return nil
}

// ChooseFormat is the format of a freeze that asked for want (empty: the
// site's default), refused unless the site offers it.
func (p *Policy) ChooseFormat(want string) (string, error) {
	if want == "" {
		return p.Format, nil
	}
	if !slices.Contains(p.Formats, want) {
		return "", fmt.Errorf("format %q is not offered here; choose one of %s", want, strings.Join(p.Formats, ", "))
	}
	return want, nil
}

// StoreDir is the layer store of v's user (User, UID and Group are used)
// and the save root it lies below: store_path expanded, or "store" in the
// user's save directory when store_path is empty. It must lie below a
// save root, as archives do.
func (p *Policy) StoreDir(v Vars) (dir, root string, err error) {
	tmpl := p.StorePath
	if tmpl == "" {
		user := p.UserDir(v.User, v.UID)
		if user == "" {
			return "", "", fmt.Errorf("%w: the user %q cannot be used in a path", ErrBadName, v.User)
		}
		tmpl = filepath.Join(user, "store")
	}
	for _, key := range []string{"{node}", "{job}", "{date}", "{container}", "{task}", "{time}"} {
		if strings.Contains(tmpl, key) {
			return "", "", fmt.Errorf("store_path %q: %s cannot be used: one store serves every freeze of a user or group", p.StorePath, key)
		}
	}
	dir, err = expand(tmpl, v)
	if err != nil {
		return "", "", fmt.Errorf("store_path: %w", err)
	}
	fixed := Policy{SavePath: dir, SaveRoots: p.SaveRoots}
	if dir, root, err = fixed.Destination(Vars{}); err != nil {
		return "", "", fmt.Errorf("store: %w", err)
	}
	return dir, root, nil
}
