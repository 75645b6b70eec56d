package processor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/event"
	"github.com/doraflow/doraflow/processor/correlate"
)

// ConsumerName is the durable consumer of a partition.
func ConsumerName(partition int) string { return fmt.Sprintf("doraflow-processor-p%d", partition) }

// PartitionSubjects are what a partition's processor consumes: its own
// pushes, merges and deployments, and every partition's incidents.
func PartitionSubjects(partition int) []string {
	return []string{
		bus.EventSubject(partition, "push"),
		bus.EventSubject(partition, "merge"),
		bus.EventSubject(partition, "deployment"),
		"doraflow.events.*.incident",
	}
}

// own keeps the stored facts this partition writes: its repositories'
// deployments and changes, and the incidents it owns.
func (p *Processor) own(f correlate.Facts) correlate.Facts {
	mine := func(key string) bool { return event.Partition(key, p.opts.Partitions) == p.opts.Partition }
	var out correlate.Facts
	for _, r := range f.Deployments {
		if mine("repo:" + r.Fact.Repo) {
			out.Deployments = append(out.Deployments, r)
		}
	}
	for _, r := range f.Changes {
		if mine("repo:" + r.Fact.Repo) {
			out.Changes = append(out.Changes, r)
		}
	}
	for _, r := range f.Incidents {
		if p.opts.Correlate.OwnsIncident(correlate.IncidentKey(r.Fact)) {
			out.Incidents = append(out.Incidents, r)
		}
	}
	return out
}

// foreignSet is a version of every partition's production deployments.
type foreignSet struct {
	deps    []correlate.ProductionDeployment
	version uint64
}

// SetForeign offers the production deployments of every partition (the
// processor's own are ignored); the processor adopts them between batches.
func (p *Processor) SetForeign(deps []correlate.ProductionDeployment, version uint64) {
	p.foreign.Store(&foreignSet{deps: deps, version: version})
}

// adoptForeign takes the last offered deployments into the state, and
// reports whether that changed anything.
func (p *Processor) adoptForeign() bool {
	f := p.foreign.Load()
	if f == nil || f.version == p.foreignApplied.Load() {
		return false
	}
	changed := p.state.SetForeign(f.deps)
	p.foreignApplied.Store(f.version)
	return changed
}

// indexKey names a production deployment in the index bucket.
func indexKey(d correlate.ProductionDeployment) string {
	sum := sha256.Sum256([]byte(d.Repo + "\x00" + d.ID))
	return "d." + hex.EncodeToString(sum[:12])
}

// publishIndex puts this partition's production deployments in the index
// bucket, where every processor's manager watches them, and removes those
// that are no longer production deployments.
func (p *Processor) publishIndex(ctx context.Context) error {
	if p.index == nil {
		kv, err := p.js.KeyValue(ctx, bus.DeploymentIndexBucket)
		if err != nil {
			return fmt.Errorf("processor: deployment index: %w", err)
		}
		p.index = kv
	}
	cur := map[string]correlate.ProductionDeployment{}
	for _, d := range p.state.ProductionDeployments() {
		cur[indexKey(d)] = d
	}
	for k, d := range cur {
		if old, ok := p.published[k]; ok && old.Service == d.Service && old.At.Equal(d.At) {
			continue
		}
		value, err := json.Marshal(d)
		if err != nil {
			return err
		}
		if _, err := p.index.Put(ctx, k, value); err != nil {
			return fmt.Errorf("processor: publish deployment %s: %w", d.ID, err)
		}
		p.published[k] = d
	}
	for k := range p.published {
		if _, ok := cur[k]; !ok {
			if err := p.index.Delete(ctx, k); err != nil {
				return fmt.Errorf("processor: withdraw deployment: %w", err)
			}
			delete(p.published, k)
		}
	}
	return nil
}
