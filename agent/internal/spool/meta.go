package spool

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// GetMeta returns the metadata value stored under key, or nil and no error
// when there is none. Metadata lives beside the batches, under its own key
// prefix, for agent components that need small durable state: high-water
// marks per entity, the vCenter event checkpoint. The returned slice is a
// copy the caller owns.
func (q *Queue) GetMeta(key string) ([]byte, error) {
	if key == "" {
		return nil, errors.New("spool: get meta: empty key")
	}
	q.life.RLock()
	defer q.life.RUnlock()
	if q.closed {
		return nil, ErrClosed
	}
	var val []byte
	err := q.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(metaKey(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		val, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("spool: get meta %q: %w", key, err)
	}
	return val, nil
}

// SetMeta stores val under key; a nil val deletes the key. It is durable
// like Append.
func (q *Queue) SetMeta(key string, val []byte) error {
	return q.SetMetaBatch(map[string][]byte{key: val})
}

// SetMetaBatch stores several metadata values atomically; nil values delete
// their keys. Use it to advance related high-water marks together. One
// batch must fit one Badger transaction: with the spool's 64 KB memtables
// that is about 100 keys and 9 KB of values under 1 KB (larger values go to
// the value log and count as a pointer); beyond that it fails with an error
// wrapping badger.ErrTxnTooBig and stores nothing.
func (q *Queue) SetMetaBatch(kv map[string][]byte) error {
	q.life.RLock()
	defer q.life.RUnlock()
	if q.closed {
		return ErrClosed
	}
	q.mu.Lock() // writers are serialized (see valueLogGC)
	defer q.mu.Unlock()
	err := q.db.Update(func(txn *badger.Txn) error {
		for k, v := range kv {
			if k == "" {
				return errors.New("empty key")
			}
			var err error
			if v == nil {
				err = txn.Delete(metaKey(k))
			} else {
				err = txn.Set(metaKey(k), append([]byte(nil), v...))
			}
			if err != nil {
				return fmt.Errorf("key %q: %w", k, err)
			}
		}
		return nil
	})
	q.unsynced.Store(true)
	if err != nil {
		return fmt.Errorf("spool: set meta: %w", err)
	}
	return nil
}
