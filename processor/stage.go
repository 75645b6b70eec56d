package processor

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/event"
	"github.com/doraflow/doraflow/processor/correlate"
)

// A stage is what a worker runs: one partition's repository stage, or the
// attribution stage. The worker fetches from the event stream and the link
// stream, folds what it fetched, flushes, writes the facts, publishes the
// links, and only then acknowledges.
type stage interface {
	// name names the worker's consumers, snapshot and checkpoint.
	name() string
	eventSubjects() []string
	linkSubjects() []string
	apply(e event.Event)
	applyLink(m *nats.Msg) error
	// flush returns the rows to write and the links to publish.
	flush() (correlate.Facts, []*nats.Msg, error)
	// touched names what was folded since the last flush: repositories and
	// incidents, whose stored facts a rebuild remembers.
	touched() (repos, incidents []string)
	// remember takes what the store holds of what was touched: all of it,
	// or (written) only what was written since the snapshot.
	remember(stored correlate.Facts, written bool)
}

// Link headers: the kind of record a link message carries.
const (
	headerLink     = "Doraflow-Link"
	linkDeployment = "deployment"
	linkShip       = "ship"
	linkBlame      = "blame"
)

func linkMsg(subject, kind string, v any) (*nats.Msg, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("processor: encode %s link: %w", kind, err)
	}
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(headerLink, kind)
	return m, nil
}

// repoStage is a partition's repository stage.
type repoStage struct {
	partition int
	repos     *correlate.Repos
	gaps      []correlate.Gap // found by the last flush
}

func (s *repoStage) name() string { return PartitionWorker(s.partition) }

// PartitionWorker names the worker of a partition's repository stage.
func PartitionWorker(partition int) string { return fmt.Sprintf("p%d", partition) }

// PartitionSubjects are what a partition's repository stage consumes of
// the event stream.
func PartitionSubjects(partition int) []string {
	return (&repoStage{partition: partition}).eventSubjects()
}

// eventSubjects: the partition's pushes, merges and deployments, and every
// partition's incidents (those naming a commit make the stage watch it).
func (s *repoStage) eventSubjects() []string {
	return []string{
		bus.EventSubject(s.partition, "push"),
		bus.EventSubject(s.partition, "merge"),
		bus.EventSubject(s.partition, "deployment"),
		"doraflow.events.*.incident",
	}
}

func (s *repoStage) linkSubjects() []string { return []string{bus.LinkBlames} }

func (s *repoStage) apply(e event.Event) { s.repos.Apply(e) }

func (s *repoStage) applyLink(m *nats.Msg) error {
	if kind := m.Header.Get(headerLink); kind != linkBlame {
		return fmt.Errorf("processor: %s link on %s", kind, m.Subject)
	}
	var b correlate.BlamedIncident
	if err := json.Unmarshal(m.Data, &b); err != nil {
		return fmt.Errorf("processor: decode blame: %w", err)
	}
	s.repos.ApplyBlame(b)
	return nil
}

func (s *repoStage) touched() ([]string, []string) { return s.repos.Touched(), nil }

func (s *repoStage) remember(stored correlate.Facts, written bool) {
	if written {
		s.repos.RememberWritten(stored)
		return
	}
	s.repos.Remember(stored, s.repos.Touched())
}

func (s *repoStage) flush() (correlate.Facts, []*nats.Msg, error) {
	out := s.repos.Flush()
	var msgs []*nats.Msg
	for _, d := range out.Deployments {
		m, err := linkMsg(bus.LinkDeployments, linkDeployment, d)
		if err != nil {
			return out.Facts, nil, err
		}
		msgs = append(msgs, m)
	}
	for _, sh := range out.Ships {
		m, err := linkMsg(bus.LinkDeployments, linkShip, sh)
		if err != nil {
			return out.Facts, nil, err
		}
		msgs = append(msgs, m)
	}
	s.gaps = out.Gaps
	return out.Facts, msgs, nil
}

// attributionStage is the one stage that attributes every incident.
type attributionStage struct {
	attribution *correlate.Attribution
}

func (s *attributionStage) name() string { return "attribution" }

func (s *attributionStage) eventSubjects() []string { return []string{"doraflow.events.*.incident"} }

func (s *attributionStage) linkSubjects() []string { return []string{bus.LinkDeployments} }

func (s *attributionStage) apply(e event.Event) { s.attribution.Apply(e) }

func (s *attributionStage) applyLink(m *nats.Msg) error {
	switch kind := m.Header.Get(headerLink); kind {
	case linkDeployment:
		var d correlate.ProductionDeployment
		if err := json.Unmarshal(m.Data, &d); err != nil {
			return fmt.Errorf("processor: decode deployment link: %w", err)
		}
		s.attribution.ApplyDeployment(d)
	case linkShip:
		var sh correlate.Ship
		if err := json.Unmarshal(m.Data, &sh); err != nil {
			return fmt.Errorf("processor: decode ship link: %w", err)
		}
		s.attribution.ApplyShip(sh)
	default:
		return fmt.Errorf("processor: %s link on %s", kind, m.Subject)
	}
	return nil
}

func (s *attributionStage) touched() ([]string, []string) { return nil, s.attribution.Touched() }

func (s *attributionStage) remember(stored correlate.Facts, _ bool) {
	s.attribution.Remember(stored.Incidents, s.attribution.Touched())
}

func (s *attributionStage) flush() (correlate.Facts, []*nats.Msg, error) {
	rows, blames := s.attribution.Flush()
	var msgs []*nats.Msg
	for _, b := range blames {
		m, err := linkMsg(bus.LinkBlames, linkBlame, b)
		if err != nil {
			return correlate.Facts{}, nil, err
		}
		msgs = append(msgs, m)
	}
	return correlate.Facts{Incidents: rows}, msgs, nil
}

// linkIDs gives link messages ids unique to this run of the worker: a
// retry of the same publish repeats them (JetStream drops the copies), and
// no later record, even one equal to an earlier, is taken for a copy.
func (p *Processor) linkIDs(msgs []*nats.Msg) {
	for _, m := range msgs {
		p.linkSeq++
		m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("%s:%s:%d", p.stage.name(), p.runID, p.linkSeq))
	}
}
