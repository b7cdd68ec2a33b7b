package mapping

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"

	"github.com/aldis-im/aldis/core/config"
	"github.com/aldis-im/aldis/core/label"
)

// Changes is what a new map changes from an old one. Links are identified by their room.
type Changes struct {
	Added, Removed []Link
	Changed        []Link   // the new versions of links whose channel, key, labels or network differ
	Networks       []string // networks added, removed or changed: their connections start again
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return len(c.Added)+len(c.Removed)+len(c.Changed)+len(c.Networks) == 0
}

// Diff compares two maps; a nil old map is empty.
func Diff(old, cur *Map) Changes {
	if old == nil {
		old = &Map{byName: map[string]int{}, byRoom: map[string]int{}}
	}
	var ch Changes
	for _, l := range cur.links {
		prev, ok := old.ByRoom(l.Room)
		switch {
		case !ok:
			ch.Added = append(ch.Added, l)
		case prev != l:
			ch.Changed = append(ch.Changed, l)
		}
	}
	for _, l := range old.links {
		if _, ok := cur.ByRoom(l.Room); !ok {
			ch.Removed = append(ch.Removed, l)
		}
	}
	for _, n := range cur.networks {
		prev, ok := old.Network(n.Name)
		if !ok || !sameNetwork(prev, n) {
			ch.Networks = append(ch.Networks, n.Name)
		}
	}
	for _, n := range old.networks {
		if _, ok := cur.Network(n.Name); !ok {
			ch.Networks = append(ch.Networks, n.Name)
		}
	}
	slices.Sort(ch.Networks)
	return ch
}

func sameNetwork(a, b Network) bool { return reflect.DeepEqual(a, b) }

// Store holds the current map, read from a fixed list of files, and replaces it on Reload.
type Store struct {
	paths []string
	mu    sync.Mutex // serialises reloads
	cur   *Map
	rw    sync.RWMutex
}

// Open loads the map files at paths.
func Open(paths ...string) (*Store, error) {
	if len(paths) == 0 {
		return nil, errors.New("mapping: no map files")
	}
	m, err := Load(paths...)
	if err != nil {
		return nil, err
	}
	return &Store{paths: slices.Clone(paths), cur: m}, nil
}

// Map returns the current map.
func (s *Store) Map() *Map {
	s.rw.RLock()
	defer s.rw.RUnlock()
	return s.cur
}

// Reload reads the files again. If they are valid the new map replaces the current one and the
// changes are returned; if not, the current map stays and the errors are returned.
func (s *Store) Reload() (Changes, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := Load(s.paths...)
	if err != nil {
		return Changes{}, err
	}
	s.rw.Lock()
	old := s.cur
	s.cur = m
	s.rw.Unlock()
	return Diff(old, m), nil
}

// CheckLabels checks every label and clearance expression of m against the policy set, with
// file:line errors.
func (m *Map) CheckLabels(set *label.Set) error {
	var errs config.Errors
	probs := map[string][]config.Problem{}
	for _, file := range m.Files {
		var f File
		if err := config.DecodeFile(file, m.sources[file], &f); err != nil {
			return err // can't happen: the map was built from these bytes
		}
		check := func(key, expr string, clearance bool) {
			if expr == "" {
				return
			}
			var err error
			if clearance {
				_, err = set.ParseClearance(expr)
			} else {
				_, err = set.ParseLabel(expr)
			}
			if err != nil {
				probs[file] = append(probs[file], config.Problem{Key: key, Msg: err.Error()})
			}
		}
		for i, n := range f.Networks {
			check(fmt.Sprintf("network[%d].clearance", i), n.Clearance, true)
		}
		for i, l := range f.Links {
			check(fmt.Sprintf("link[%d].label", i), l.Label, false)
			check(fmt.Sprintf("link[%d].clearance", i), l.Clearance, true)
		}
		if ps := probs[file]; len(ps) > 0 {
			errs = append(errs, config.Locate(file, m.sources[file], ps)...)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}
