// Package config reads baicommit's TOML files (agent.toml, manager.toml,
// client.toml) strictly: unknown keys are errors, and every error names the
// key or quotes the line.
package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/baicommit/baicommit/internal/units"
)

// Duration is a time.Duration written as "60s" or "30d" in TOML.
type Duration = units.Duration

// Load decodes the TOML file at path over v, which holds the defaults.
// Unknown keys are errors: a misspelt key must not silently fall back to a
// default that writes somewhere unexpected. Errors name the key or quote
// the line.
func Load(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	if err := toml.NewDecoder(f).DisallowUnknownFields().Decode(v); err != nil {
		return fmt.Errorf("config %s: %w", path, tomlError(err))
	}
	return nil
}

// tomlError names the key and line of a decoding error, which go-toml
// keeps out of its Error().
func tomlError(err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var keys []string
		for _, e := range strict.Errors {
			row, _ := e.Position()
			keys = append(keys, fmt.Sprintf("%s (line %d)", strings.Join(e.Key(), "."), row))
		}
		return fmt.Errorf("unknown key %s: %w", strings.Join(keys, ", "), err)
	}
	var dec *toml.DecodeError
	if errors.As(err, &dec) {
		// The key is not always known (a value's own parser failed); the
		// quoted line always says where.
		return fmt.Errorf("%w:\n%s", err, dec.String())
	}
	return err
}
