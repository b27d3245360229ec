// Package taskstore persists freeze tasks in an embedded bbolt database
// under the agent's state directory, so that an agent that exits when idle,
// or crashes, loses no task. Records are indexed by the users they concern
// (owner and requester), so that what one user asks for costs what that
// user has, and finished ones are pruned by age and count.
package taskstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/baicommit/baicommit/api"
)

var (
	bucket = []byte("tasks")
	// byUser indexes tasks by the users they concern: a key is the uid
	// (4 bytes), the creation time (8 bytes, Unix nanoseconds) and the
	// task id, all big-endian so that a user's keys sort oldest first.
	byUser = []byte("by-user")
)

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

	// UserDir is the owner's save directory (where quotas and retention
	// count their archives); UserBefore and UserExclude are what the
	// request asked to run before the freeze and to leave out; Quotas are
	// the manager's (nil: the agent's own).
	UserDir string `json:"user_dir,omitempty"`
	// UserStore and UserStoreRoot locate the owner's layer store, whose
	// blobs count against their quota whatever this freeze writes.
	UserStore     string      `json:"user_store,omitempty"`
	UserStoreRoot string      `json:"user_store_root,omitempty"`
	UserBefore    []string    `json:"user_before,omitempty"`
	UserExclude   []string    `json:"user_exclude,omitempty"`
	Quotas        *api.Quotas `json:"quotas,omitempty"`
}

// uids are the users r concerns: its owner, and whoever asked for it.
func (r *Record) uids() []int {
	if r.Requester != r.OwnerUID {
		return []int{r.OwnerUID, r.Requester}
	}
	return []int{r.OwnerUID}
}

// Store is the task database. It is safe for concurrent use.
type Store struct{ db *bolt.DB }

// LockTimeout is how long Open waits for another agent holding the same
// state directory before it gives up.
const LockTimeout = 10 * time.Second

// Open opens (creating if needed) the database in dir, waiting at most
// lockTimeout for another process that holds it. A database written
// before the index existed is indexed once, here.
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
		tasks, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		if tx.Bucket(byUser) != nil {
			return nil
		}
		idx, err := tx.CreateBucket(byUser)
		if err != nil {
			return err
		}
		return tasks.ForEach(func(_, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			return index(idx, &r)
		})
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func userKey(uid int, created time.Time, id string) []byte {
	k := make([]byte, 12, 12+len(id))
	binary.BigEndian.PutUint32(k, uint32(uid))
	binary.BigEndian.PutUint64(k[4:], uint64(created.UnixNano()))
	return append(k, id...)
}

func userPrefix(uid int) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(uid))
}

// index adds r's keys to the user index.
func index(idx *bolt.Bucket, r *Record) error {
	for _, uid := range r.uids() {
		if err := idx.Put(userKey(uid, r.Created, r.ID), nil); err != nil {
			return err
		}
	}
	return nil
}

// Put writes r, durably, before returning.
func (s *Store) Put(r *Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucket).Put([]byte(r.ID), b); err != nil {
			return err
		}
		return index(tx.Bucket(byUser), r)
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

// List returns the tasks keep accepts, newest first. It reads every
// record: for what one user may see, ListUser costs what they have.
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

// ListUser returns the tasks uid owns or asked for that keep accepts,
// newest first, reading only those records.
func (s *Store) ListUser(uid int, keep func(*Record) bool) ([]*Record, error) {
	var out []*Record
	err := s.db.View(func(tx *bolt.Tx) error {
		tasks, c := tx.Bucket(bucket), tx.Bucket(byUser).Cursor()
		prefix := userPrefix(uid)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			v := tasks.Get(k[12:])
			if v == nil {
				continue // pruned
			}
			r := new(Record)
			if err := json.Unmarshal(v, r); err != nil {
				return err
			}
			if keep == nil || keep(r) {
				out = append(out, r)
			}
		}
		return nil
	})
	slices.Reverse(out)
	return out, err
}

// Retention says which finished tasks are kept: those that ended less than
// MaxAge ago, at most PerUser of each owner (the newest). Tasks not yet
// finished are always kept.
type Retention struct {
	MaxAge  time.Duration
	PerUser int
}

// Prune removes the finished tasks of owner uid that ret no longer keeps
// and returns how many it removed.
func (s *Store) Prune(uid int, ret Retention, now time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		n, err = prune(tx, uid, ret, now)
		return err
	})
	return n, err
}

// PruneAll is Prune for every owner.
func (s *Store) PruneAll(ret Retention, now time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		var uids []int
		err := tx.Bucket(byUser).ForEach(func(k, _ []byte) error {
			if uid := int(binary.BigEndian.Uint32(k)); len(uids) == 0 || uids[len(uids)-1] != uid {
				uids = append(uids, uid)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, uid := range uids {
			m, err := prune(tx, uid, ret, now)
			if err != nil {
				return err
			}
			n += m
		}
		return nil
	})
	return n, err
}

func prune(tx *bolt.Tx, uid int, ret Retention, now time.Time) (int, error) {
	tasks, idx := tx.Bucket(bucket), tx.Bucket(byUser)
	prefix := userPrefix(uid)
	var keys [][]byte
	c := idx.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, slices.Clone(k))
	}
	// Newest first: the first PerUser finished tasks are kept.
	slices.Reverse(keys)
	kept, removed := 0, 0
	for _, k := range keys {
		v := tasks.Get(k[12:])
		if v == nil {
			if err := idx.Delete(k); err != nil {
				return removed, err
			}
			continue
		}
		var r Record
		if err := json.Unmarshal(v, &r); err != nil {
			return removed, err
		}
		if r.OwnerUID != uid || !r.Done() {
			// Asked for by uid (its owner's rules keep it), or not over.
			continue
		}
		end := r.Finished
		if end.IsZero() {
			end = r.Created
		}
		if kept < ret.PerUser && now.Sub(end) < ret.MaxAge {
			kept++
			continue
		}
		if err := tasks.Delete(k[12:]); err != nil {
			return removed, err
		}
		for _, u := range r.uids() {
			if err := idx.Delete(userKey(u, r.Created, r.ID)); err != nil {
				return removed, err
			}
		}
		removed++
	}
	return removed, nil
}
