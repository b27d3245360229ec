package manager

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/baicommit/baicommit/api"
)

// validateFormats checks store_path, format and formats.
func (c *Config) validateFormats() error {
	if c.StorePath != "" && (!filepath.IsAbs(c.StorePath) || filepath.Clean(c.StorePath) != c.StorePath) {
		return fmt.Errorf("store_path %q must be a clean absolute path template", c.StorePath)
	}
	if len(c.Formats) == 0 {
		c.Formats = api.AllFormats()
	}
	for _, f := range c.Formats {
		if !slices.Contains(api.AllFormats(), f) {
			return fmt.Errorf("formats: %q is not one of %v", f, api.AllFormats())
		}
	}
	if c.Format != "" && !slices.Contains(c.Formats, c.Format) {
		return fmt.Errorf("format %q: want one of formats %v", c.Format, c.Formats)
	}
	return nil
}

// placeFormat applies the site's format choices to a freeze request: the
// user's format must be one the site offers, and none means the site's
// default (or, with none set, each agent's own).
func (m *Manager) placeFormat(req *api.FreezeRequest) error {
	if req.StorePath != "" {
		return userErr(KindForbidden, "store_path is set by the site, not per request")
	}
	req.StorePath = m.cfg.StorePath
	if req.Format == "" {
		req.Format = m.cfg.Format
		return nil
	}
	if !slices.Contains(m.cfg.Formats, req.Format) {
		return userErr(KindInvalid, "format %q is not offered here; choose one of %v", req.Format, m.cfg.Formats)
	}
	return nil
}
