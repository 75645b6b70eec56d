package bus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// The processor's own stream and buckets: how its stages hand records to
// each other, and where each worker checkpoints.
const (
	// LinkStream carries the records between the correlation's stages:
	// production deployments and shipped commits from the repository stages
	// to attribution (doraflow.links.deployments), and each incident's blame
	// back to every repository stage (doraflow.links.blames).
	LinkStream      = "DORAFLOW_LINKS"
	LinkSubjects    = "doraflow.links.>"
	LinkDeployments = "doraflow.links.deployments"
	LinkBlames      = "doraflow.links.blames"

	// CheckpointBucket holds, per processor worker, the stream positions
	// up to which its facts are written: a restart folds exactly that far
	// before it consumes again.
	CheckpointBucket = "doraflow_checkpoints"
)

// ensureProcessorStreams creates or updates the link stream and the
// checkpoint bucket.
func ensureProcessorStreams(ctx context.Context, js jetstream.JetStream, replicas int) error {
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        LinkStream,
		Description: "records between the correlation's stages: production deployments, shipped commits, blamed incidents",
		Subjects:    []string{LinkSubjects},
		Storage:     jetstream.FileStorage,
		Duplicates:  DuplicateWindow,
		Replicas:    replicas,
	}); err != nil {
		return fmt.Errorf("bus: stream %s: %w", LinkStream, replicasHint(err, replicas))
	}
	if err := awaitReplicas(ctx, js, LinkStream, replicas); err != nil {
		return err
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      CheckpointBucket,
		Description: "per processor worker: the stream positions its written facts cover",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}); err != nil {
		return fmt.Errorf("bus: key-value bucket %s: %w", CheckpointBucket, replicasHint(err, replicas))
	}
	if err := awaitReplicas(ctx, js, "KV_"+CheckpointBucket, replicas); err != nil {
		return err
	}
	return nil
}
