package taskstore

import bolt "go.etcd.io/bbolt"

// DropIndexForTest removes the user index, as a store written before it
// existed has none.
func (s *Store) DropIndexForTest() error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(byUser) })
}
