// Package taskstore persists freeze tasks in an embedded bbolt database
// under the agent's state directory, so that an agent that exits when idle,
// or crashes, loses no task.
package taskstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/baicommit/baicommit/api"
	bolt "go.etcd.io/bbolt"
)

var bucket = []byte("tasks")

// ErrNotFound is returned for an unknown task id.
var ErrNotFound = errors.New("no such task")

// Record is a task as stored: the public task plus what the agent needs
// to clean up after it.
type Record struct {
	api.Task
	// Dir, Root and Temp locate the temporary archive while it is written.
	Dir  string `json:"dir,omitempty"`
	Root string `json:"root,omitempty"`
	Temp string `json:"temp,omitempty"`
	// StoreDir and StoreRoot locate the layer store a freeze in format
	// store or both writes into, StoreToken its hold and temporary files
	// there.
	StoreDir   string `json:"store_dir,omitempty"`
	StoreRoot  string `json:"store_root,omitempty"`
	StoreToken string `json:"store_token,omitempty"`
	// Planned is where the task's archive goes: Archive while the archive
	// is written, kept here for a freeze into the store alone, which
	// shows no archive.
	Planned *api.Archive `json:"planned,omitempty"`

	// Stop asks to stop the container first if it still runs (a freeze
	// at the end of its Slurm job: the job's processes are gone).
	Stop bool `json:"stop,omitempty"`
	// ExitCode is the container's exit code once it has exited.
	ExitCode *int `json:"exit_code,omitempty"`
	// JobExit is the Slurm job's "EXIT:SIGNAL", for the sidecar.
	JobExit string `json:"job_exit,omitempty"`
	// Paused says the freeze paused the container and has not unpaused it
	// yet: an agent that starts again unpauses it.
	Paused bool `json:"paused,omitempty"`
}

// Store is the task database. It is safe for concurrent use.
type Store struct{ db *bolt.DB }

// LockTimeout is how long Open waits for another agent holding the same
// state directory before it gives up.
const LockTimeout = 10 * time.Second

// Open opens (creating if needed) the database in dir, waiting at most
// lockTimeout for another process that holds it.
func Open(dir string, lockTimeout time.Duration) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	path := filepath.Join(dir, "tasks.db")
	// The timeout turns a second agent on the same state into an error
	// rather than a hang.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return nil, fmt.Errorf("open task store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Put writes r, durably, before returning.
func (s *Store) Put(r *Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(r.ID), b)
	})
}

// Get reads one task.
func (s *Store) Get(id string) (*Record, error) {
	var r *Record
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket).Get([]byte(id))
		if b == nil {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		r = new(Record)
		return json.Unmarshal(b, r)
	})
	return r, err
}

// List returns the tasks keep accepts, newest first.
func (s *Store) List(keep func(*Record) bool) ([]*Record, error) {
	var out []*Record
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
			r := new(Record)
			if err := json.Unmarshal(v, r); err != nil {
				return err
			}
			if keep == nil || keep(r) {
				out = append(out, r)
			}
			return nil
		})
	})
	slices.SortFunc(out, func(a, b *Record) int { return b.Created.Compare(a.Created) })
	return out, err
}
