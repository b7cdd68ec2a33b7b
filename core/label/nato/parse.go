package nato

import (
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
)

// Parse parses a serialised 4774 label root element. Any namespace prefix
// may be used but the namespace must be NS. Children in other namespaces are
// skipped; unknown children in NS are errors. Text content is trimmed of
// surrounding whitespace; the URL= misspelling of PolicyIdentifier's URI
// attribute (in SPIFFING's NATO test data) and upper-camel root names are
// accepted.
func Parse(b []byte) (Label, error) {
	var l Label
	if len(b) > MaxSize {
		return l, fmt.Errorf("nato: label exceeds %d bytes", MaxSize)
	}
	r := newReader(b)
	se, err := r.root()
	if err != nil {
		return l, fmt.Errorf("nato: %w", err)
	}
	if se.Name.Space != NS {
		return l, fmt.Errorf("nato: root element in namespace %q, want %q", se.Name.Space, NS)
	}
	if l.Root = rootName(se.Name.Local); l.Root == "" {
		return l, fmt.Errorf("nato: unknown root element %s", se.Name.Local)
	}
	if l.ReviewDateTime, _, err = attr(se, "ReviewDateTime"); err != nil {
		return Label{}, fmt.Errorf("nato: %w", err)
	}
	l.ReviewDateTime = strings.Trim(l.ReviewDateTime, xmlSpace)
	var seenInfo, seenCreated, seenOrig bool
	ns := []string{NS}
	err = r.children(ns, func(se xml.StartElement) error {
		var err error
		switch se.Name.Local {
		case "ConfidentialityInformation":
			if err := once(&seenInfo); err != nil {
				return err
			}
			return parseInfo(r, &l)
		case "CreationDateTime":
			if err := once(&seenCreated); err != nil {
				return err
			}
			l.CreationDateTime, err = r.text(ns)
			return err
		case "OriginatorID":
			if err := once(&seenOrig); err != nil {
				return err
			}
			if l.OriginatorIDType, _, err = attr(se, "IDType"); err != nil {
				return err
			}
			l.OriginatorID, err = r.text(ns)
			return err
		}
		return errors.New("unknown element")
	})
	if err != nil {
		return Label{}, fmt.Errorf("nato: %s: %w", se.Name.Local, err)
	}
	if err := r.end(); err != nil {
		return Label{}, fmt.Errorf("nato: %w", err)
	}
	if !seenInfo {
		return Label{}, errors.New("nato: missing ConfidentialityInformation")
	}
	if err := l.Validate(); err != nil {
		return Label{}, err
	}
	return l, nil
}

// parseInfo parses the children of ConfidentialityInformation into l.
func parseInfo(r *reader, l *Label) error {
	var seenPolicy, seenClass, seenMark bool
	ns := []string{NS}
	err := r.children(ns, func(se xml.StartElement) error {
		var err error
		switch se.Name.Local {
		case "PolicyIdentifier":
			if err := once(&seenPolicy); err != nil {
				return err
			}
			l.PolicyName, l.PolicyURI, err = parsePolicy(r, se, ns)
			return err
		case "Classification":
			if err := once(&seenClass); err != nil {
				return err
			}
			l.Classification, err = r.text(ns)
			return err
		case "PrivacyMark":
			if err := once(&seenMark); err != nil {
				return err
			}
			l.PrivacyMark, err = r.text(ns)
			return err
		case "Category":
			if len(l.Categories) == MaxCategories {
				return fmt.Errorf("more than %d categories", MaxCategories)
			}
			c, err := parseCategory(r, se, ns)
			if err != nil {
				return err
			}
			l.Categories = append(l.Categories, c)
			return nil
		}
		return errors.New("unknown element")
	})
	switch {
	case err != nil:
		return err
	case !seenPolicy:
		return errors.New("missing PolicyIdentifier")
	case !seenClass:
		return errors.New("missing Classification")
	}
	return nil
}

// parsePolicy parses a PolicyIdentifier element whose start was just read.
func parsePolicy(r *reader, se xml.StartElement, ns []string) (name, uri string, err error) {
	uri, ok, err := attr(se, "URI")
	if err != nil {
		return "", "", err
	}
	if !ok {
		// SPIFFING's NATO test data writes URL= for URI=.
		if uri, _, err = attr(se, "URL"); err != nil {
			return "", "", err
		}
	}
	name, err = r.text(ns)
	return name, uri, err
}

// parseCategory parses a Category element whose start was just read.
func parseCategory(r *reader, se xml.StartElement, ns []string) (Category, error) {
	var c Category
	var err error
	if c.TagName, _, err = attr(se, "TagName"); err != nil {
		return c, err
	}
	if c.Type, _, err = attr(se, "Type"); err != nil {
		return c, err
	}
	// The XSD's enumeration is upper case; accept any case and normalise.
	c.Type = strings.ToUpper(c.Type)
	if c.URI, _, err = attr(se, "URI"); err != nil {
		return c, err
	}
	err = r.children(ns, func(se xml.StartElement) error {
		if se.Name.Local != "GenericValue" {
			return errors.New("unknown element")
		}
		if len(c.Values) == MaxValues {
			return fmt.Errorf("more than %d values", MaxValues)
		}
		v, err := r.text(ns)
		c.Values = append(c.Values, v)
		return err
	})
	return c, err
}

// ParseClearance parses a ConfidentialityClearance element in NSClearance.
// Its children may be in NS (as SPIFFING writes them) or in NSClearance.
func ParseClearance(b []byte) (Clearance, error) {
	var c Clearance
	if len(b) > MaxSize {
		return c, fmt.Errorf("nato: clearance exceeds %d bytes", MaxSize)
	}
	r := newReader(b)
	se, err := r.root()
	if err != nil {
		return c, fmt.Errorf("nato: %w", err)
	}
	if se.Name.Space != NSClearance || se.Name.Local != "ConfidentialityClearance" {
		return c, fmt.Errorf("nato: root element {%s}%s, want {%s}ConfidentialityClearance", se.Name.Space, se.Name.Local, NSClearance)
	}
	ns := []string{NS, NSClearance}
	var seenPolicy, seenList bool
	err = r.children(ns, func(se xml.StartElement) error {
		var err error
		switch se.Name.Local {
		case "PolicyIdentifier":
			if err := once(&seenPolicy); err != nil {
				return err
			}
			c.PolicyName, c.PolicyURI, err = parsePolicy(r, se, ns)
			return err
		case "ClassificationList":
			if err := once(&seenList); err != nil {
				return err
			}
			return r.children(ns, func(se xml.StartElement) error {
				if se.Name.Local != "Classification" {
					return errors.New("unknown element")
				}
				if len(c.Classifications) == MaxValues {
					return fmt.Errorf("more than %d classifications", MaxValues)
				}
				v, err := r.text(ns)
				c.Classifications = append(c.Classifications, v)
				return err
			})
		case "Category":
			if len(c.Categories) == MaxCategories {
				return fmt.Errorf("more than %d categories", MaxCategories)
			}
			cat, err := parseCategory(r, se, ns)
			if err != nil {
				return err
			}
			c.Categories = append(c.Categories, cat)
			return nil
		}
		return errors.New("unknown element")
	})
	if err != nil {
		return Clearance{}, fmt.Errorf("nato: ConfidentialityClearance: %w", err)
	}
	if err := r.end(); err != nil {
		return Clearance{}, fmt.Errorf("nato: %w", err)
	}
	if !seenPolicy {
		return Clearance{}, errors.New("nato: clearance: missing PolicyIdentifier")
	}
	if err := c.Validate(); err != nil {
		return Clearance{}, err
	}
	return c, nil
}

// rootName maps an accepted root element name to its lower-camel form.
func rootName(local string) string {
	for _, n := range []string{RootOriginator, RootAlternative, RootSuccessor} {
		if local == n || local == strings.ToUpper(n[:1])+n[1:] {
			return n
		}
	}
	return ""
}

// once marks a singleton child as seen, failing if it already was.
func once(seen *bool) error {
	if *seen {
		return errors.New("repeated element")
	}
	*seen = true
	return nil
}
