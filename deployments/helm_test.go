package deployments

import (
	"fmt"
	"maps"
	"os"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/doraflow/doraflow/pkg/config"
)

const (
	chartDir      = "helm/doraflow"
	exampleValues = "helm/examples/doraflow-values.yaml"
	natsValues    = "helm/examples/nats-values.yaml"
)

// valueSets are the values the chart is checked with: its defaults, and
// the production example.
var valueSets = []string{"", exampleValues}

func readValues(t *testing.T, file string) map[string]any {
	t.Helper()
	if file == "" {
		return map[string]any{}
	}
	vals, err := chartutil.ReadValuesFile(file)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return vals
}

// effectiveValues are the chart's defaults overlaid with the file's.
func effectiveValues(t *testing.T, file string) chartutil.Values {
	t.Helper()
	chart, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.CoalesceValues(chart, readValues(t, file))
	if err != nil {
		t.Fatal(err)
	}
	return vals
}

// TestChartLints lints the chart with each set of values, and checks that
// its schema refuses values that would otherwise be ignored or fail late.
func TestChartLints(t *testing.T) {
	cases := []struct {
		name   string
		values map[string]any
		errs   bool
	}{
		{name: "defaults", values: readValues(t, "")},
		{name: exampleValues, values: readValues(t, exampleValues)},
		{name: "misspelt key", values: map[string]any{"colector": map[string]any{"replicas": 3}}, errs: true},
		{name: "more NATS replicas than JetStream allows", values: map[string]any{"nats": map[string]any{"replicas": 7}}, errs: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			linter := lint.All(chartDir, tc.values, "doraflow", false)
			var problems []string
			for _, m := range linter.Messages {
				if m.Severity >= support.WarningSev {
					problems = append(problems, m.Error())
				}
			}
			if tc.errs != (len(problems) > 0) {
				t.Errorf("lint problems %q; want problems: %v", problems, tc.errs)
			}
		})
	}
}

// manifests are the objects the chart renders, decoded strictly into their
// Kubernetes types: a field the API does not know fails.
type manifests struct {
	deployments map[string]*appsv1.Deployment // by component
	services    []*corev1.Service
	configMaps  []*corev1.ConfigMap
	jobs        []*batchv1.Job
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	pdbs        []*policyv1.PodDisruptionBudget
	ingresses   []*networkingv1.Ingress
}

func renderChart(t *testing.T, valuesFile string) manifests {
	t.Helper()
	chart, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load %s: %v", chartDir, err)
	}
	vals, err := chartutil.ToRenderValues(chart, readValues(t, valuesFile),
		chartutil.ReleaseOptions{Name: "doraflow", Namespace: "doraflow", IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatalf("values %q: %v", valuesFile, err)
	}
	files, err := engine.Render(chart, vals)
	if err != nil {
		t.Fatalf("render with %q: %v", valuesFile, err)
	}
	m := manifests{deployments: map[string]*appsv1.Deployment{}}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if path.Ext(name) != ".yaml" {
			continue
		}
		for i, doc := range strings.Split(files[name], "\n---\n") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			where := fmt.Sprintf("%s#%d", name, i)
			var meta struct{ APIVersion, Kind string }
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var obj any
			switch meta.APIVersion + " " + meta.Kind {
			case "apps/v1 Deployment":
				obj = &appsv1.Deployment{}
			case "v1 Service":
				m.services = append(m.services, &corev1.Service{})
				obj = m.services[len(m.services)-1]
			case "v1 ConfigMap":
				m.configMaps = append(m.configMaps, &corev1.ConfigMap{})
				obj = m.configMaps[len(m.configMaps)-1]
			case "batch/v1 Job":
				m.jobs = append(m.jobs, &batchv1.Job{})
				obj = m.jobs[len(m.jobs)-1]
			case "autoscaling/v2 HorizontalPodAutoscaler":
				m.hpas = append(m.hpas, &autoscalingv2.HorizontalPodAutoscaler{})
				obj = m.hpas[len(m.hpas)-1]
			case "policy/v1 PodDisruptionBudget":
				m.pdbs = append(m.pdbs, &policyv1.PodDisruptionBudget{})
				obj = m.pdbs[len(m.pdbs)-1]
			case "networking.k8s.io/v1 Ingress":
				m.ingresses = append(m.ingresses, &networkingv1.Ingress{})
				obj = m.ingresses[len(m.ingresses)-1]
			default:
				t.Fatalf("%s: %s %s is not a kind this test knows", where, meta.APIVersion, meta.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s: %v\n%s", where, err, doc)
			}
			if d, ok := obj.(*appsv1.Deployment); ok {
				m.deployments[d.Spec.Template.Labels["app.kubernetes.io/component"]] = d
			}
		}
	}
	return m
}

// pods are the pod templates of every workload, by where they come from.
func (m manifests) pods() map[string]corev1.PodSpec {
	out := map[string]corev1.PodSpec{}
	for c, d := range m.deployments {
		out["deployment "+c] = d.Spec.Template.Spec
	}
	for _, j := range m.jobs {
		out["job "+j.Name] = j.Spec.Template.Spec
	}
	return out
}

func renderedContainers(t *testing.T, m manifests) []corev1.Container {
	t.Helper()
	var out []corev1.Container
	for _, name := range slices.Sorted(maps.Keys(m.pods())) {
		out = append(out, m.pods()[name].Containers...)
	}
	return out
}

// TestChartWorkloads checks, for each set of values, the roles, the
// environment against the code's list, the probes and ports against the
// code, and the restricted security context.
func TestChartWorkloads(t *testing.T) {
	for _, file := range valueSets {
		t.Run("values="+file, func(t *testing.T) {
			m := renderChart(t, file)
			roles := map[string][]string{
				"collector": {"serve", "--role", "collector"},
				"processor": {"serve", "--role", "processor"},
			}
			for component, args := range roles {
				d := m.deployments[component]
				if d == nil {
					t.Fatalf("no %s Deployment", component)
				}
				if got := d.Spec.Template.Spec.Containers[0].Args; !slices.Equal(got, args) {
					t.Errorf("%s: args %v, want %v", component, got, args)
				}
				if !reflect.DeepEqual(d.Spec.Selector.MatchLabels, selectorOf(d.Spec.Template.Labels)) {
					t.Errorf("%s: selector %v does not select its pods %v", component, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
				}
			}
			if n := len(m.deployments); n != len(roles) {
				t.Errorf("%d Deployments, want %d", n, len(roles))
			}
			known := envNames()
			fromSecret := map[string]bool{}
			for where, pod := range m.pods() {
				checkPodSecurity(t, where, pod)
				if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
					t.Errorf("%s: mounts a service account token doraflow never uses", where)
				}
				for _, c := range pod.Containers {
					if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
						t.Errorf("%s: %s has no memory request and limit", where, c.Name)
					}
					listen := ""
					for _, e := range c.Env {
						if !known[e.Name] {
							t.Errorf("%s: sets %s, which doraflow does not read (config.EnvNames)", where, e.Name)
						}
						switch {
						case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
							fromSecret[e.Name] = true
						case !plainSettings[e.Name]:
							t.Errorf("%s: %s is a secret: take it from the Secret, not a value", where, e.Name)
						}
						if e.Name == "DORAFLOW_LISTEN" {
							listen = e.Value
						}
					}
					checkProbes(t, where, c, listenPort(t, listen))
					checkConfigMount(t, where, pod, c, m)
				}
			}
			for _, v := range requiredSecrets() {
				if !fromSecret[v] {
					t.Errorf("no workload takes %s from the Secret: a team could not set it", v)
				}
			}
			collector := m.deployments["collector"].Spec.Template.Spec.Containers[0]
			for _, v := range collectorSecrets(t) {
				if !slices.ContainsFunc(collector.Env, func(e corev1.EnvVar) bool { return e.Name == v }) {
					t.Errorf("collector: lacks %s, so its source can never be switched on", v)
				}
			}
		})
	}
}

// selectorOf is the part of a pod's labels a selector should match.
func selectorOf(labels map[string]string) map[string]string {
	out := map[string]string{}
	for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"} {
		out[k] = labels[k]
	}
	return out
}

// checkPodSecurity wants the restricted Pod Security Standard on every
// container, from the pod's or the container's security context.
func checkPodSecurity(t *testing.T, where string, pod corev1.PodSpec) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s: %s has no securityContext", where, c.Name)
			continue
		}
		nonRoot := sc.RunAsNonRoot
		if nonRoot == nil {
			nonRoot = psc.RunAsNonRoot
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil {
			seccomp = psc.SeccompProfile
		}
		uid := sc.RunAsUser
		if uid == nil {
			uid = psc.RunAsUser
		}
		switch {
		case nonRoot == nil || !*nonRoot:
			t.Errorf("%s: %s may run as root", where, c.Name)
		case uid == nil || strconv.FormatInt(*uid, 10) != imageUID(t):
			t.Errorf("%s: %s runs as %v, not the image's user %s", where, c.Name, uid, imageUID(t))
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("%s: %s allows privilege escalation", where, c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("%s: %s has a writable root filesystem", where, c.Name)
		case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
			t.Errorf("%s: %s capabilities %+v, want all dropped", where, c.Name, sc.Capabilities)
		case seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault:
			t.Errorf("%s: %s seccomp %+v, want RuntimeDefault", where, c.Name, seccomp)
		case sc.Privileged != nil && *sc.Privileged:
			t.Errorf("%s: %s is privileged", where, c.Name)
		}
	}
}

// checkProbes wants, on a serving container, liveness on /healthz and
// readiness on /readyz at the port doraflow listens on.
func checkProbes(t *testing.T, where string, c corev1.Container, port string) {
	t.Helper()
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		if c.LivenessProbe != nil || c.ReadinessProbe != nil {
			t.Errorf("%s: %s is a one-shot and needs no probes", where, c.Name)
		}
		return
	}
	var ports []string
	named := map[string]string{}
	for _, p := range c.Ports {
		ports = append(ports, strconv.Itoa(int(p.ContainerPort)))
		named[p.Name] = strconv.Itoa(int(p.ContainerPort))
	}
	if !slices.Equal(ports, []string{port}) {
		t.Errorf("%s: %s declares ports %v, doraflow listens on %s", where, c.Name, ports, port)
	}
	probes := []struct {
		kind  string
		probe *corev1.Probe
		path  string
	}{
		{"liveness", c.LivenessProbe, "/healthz"},
		{"readiness", c.ReadinessProbe, "/readyz"},
		{"startup", c.StartupProbe, "/healthz"},
	}
	for _, p := range probes {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: %s has no %s probe", where, c.Name, p.kind)
			continue
		}
		got := p.probe.HTTPGet.Port.String()
		if p.probe.HTTPGet.Port.Type == intstr.String {
			got = named[got]
		}
		if p.probe.HTTPGet.Path != p.path || got != port {
			t.Errorf("%s: %s %s probe %s on port %s, want %s on %s", where, c.Name, p.kind, p.probe.HTTPGet.Path, got, p.path, port)
		}
	}
}

// checkConfigMount wants DORAFLOW_CONFIG to name a file of the chart's
// ConfigMap that doraflow's own loader accepts.
func checkConfigMount(t *testing.T, where string, pod corev1.PodSpec, c corev1.Container, m manifests) {
	t.Helper()
	var file string
	for _, e := range c.Env {
		if e.Name == config.FileEnv {
			file = e.Value
		}
	}
	if file == "" {
		return
	}
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != path.Dir(file) {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			for _, cm := range m.configMaps {
				if cm.Name != v.ConfigMap.Name {
					continue
				}
				data, ok := cm.Data[path.Base(file)]
				if !ok {
					t.Fatalf("%s: ConfigMap %s has no %s", where, cm.Name, path.Base(file))
				}
				local := path.Join(t.TempDir(), path.Base(file))
				if err := os.WriteFile(local, []byte(data), 0o600); err != nil {
					t.Fatal(err)
				}
				cfg, err := config.Load(local, func(string) string { return "" })
				if err == nil {
					err = cfg.Validate()
				}
				if err != nil {
					t.Errorf("%s: %s from ConfigMap %s: %v", where, file, cm.Name, err)
				}
				return
			}
		}
	}
	t.Errorf("%s: %s=%s is not a file of the chart's ConfigMap", where, config.FileEnv, file)
}

// TestChartObjects checks the Service, autoscaler, disruption budgets,
// Ingress and migration hook that go with the workloads.
func TestChartObjects(t *testing.T) {
	for _, file := range valueSets {
		t.Run("values="+file, func(t *testing.T) {
			m := renderChart(t, file)
			vals := effectiveValues(t, file)
			collector := m.deployments["collector"]
			pods := collector.Spec.Template.Labels

			if len(m.services) != 1 || !reflect.DeepEqual(m.services[0].Spec.Selector, selectorOf(pods)) {
				t.Fatalf("want one Service selecting the collectors, got %+v", m.services)
			}
			svc := m.services[0]
			if tp := svc.Spec.Ports[0].TargetPort; tp.String() != collector.Spec.Template.Spec.Containers[0].Ports[0].Name {
				t.Errorf("Service targets %s, not the collector's port", tp.String())
			}

			autoscaled := len(m.hpas) == 1
			if autoscaled != (file == exampleValues) {
				t.Errorf("%d autoscalers", len(m.hpas))
			}
			if autoscaled {
				ref := m.hpas[0].Spec.ScaleTargetRef
				if ref.Kind != "Deployment" || ref.Name != collector.Name {
					t.Errorf("autoscaler scales %s %s, not the collectors", ref.Kind, ref.Name)
				}
				if collector.Spec.Replicas != nil {
					t.Error("an autoscaled collector Deployment sets replicas: each upgrade would reset the autoscaler's count")
				}
			}
			covered := map[string]bool{}
			for _, pdb := range m.pdbs {
				for component, d := range m.deployments {
					if reflect.DeepEqual(pdb.Spec.Selector.MatchLabels, selectorOf(d.Spec.Template.Labels)) {
						covered[component] = true
					}
				}
			}
			if !covered["collector"] || !covered["processor"] {
				t.Errorf("disruption budgets cover %v, want collector and processor", covered)
			}

			if len(m.jobs) != 1 {
				t.Fatalf("%d Jobs, want the migration hook", len(m.jobs))
			}
			job := m.jobs[0]
			if got := job.Annotations["helm.sh/hook"]; got != "pre-install,pre-upgrade" {
				t.Errorf("migrations run at hook %q, want pre-install,pre-upgrade (before the new processors)", got)
			}
			if args := job.Spec.Template.Spec.Containers[0].Args; !slices.Equal(args, []string{"migrate"}) {
				t.Errorf("migration Job runs %v", args)
			}
			for _, v := range job.Spec.Template.Spec.Volumes {
				if v.ConfigMap != nil {
					t.Errorf("the pre-install hook mounts ConfigMap %s, which does not exist yet when it runs", v.ConfigMap.Name)
				}
			}

			if enabled, _ := vals.PathValue("ingress.enabled"); enabled != (len(m.ingresses) == 1) {
				t.Fatalf("%d Ingresses with ingress.enabled %v", len(m.ingresses), enabled)
			}
			for _, ing := range m.ingresses {
				var prefixes []string
				for _, rule := range ing.Spec.Rules {
					for _, p := range rule.HTTP.Paths {
						if p.Backend.Service.Name != svc.Name || p.Backend.Service.Port.Name != svc.Spec.Ports[0].Name {
							t.Errorf("Ingress path %s goes to %+v, not the Service", p.Path, p.Backend.Service)
						}
						prefixes = append(prefixes, p.Path)
					}
				}
				for _, want := range webhookPaths(t) {
					if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(want, p+"/") }) {
						t.Errorf("Ingress paths %v do not route %s", prefixes, want)
					}
				}
				for _, internal := range []string{"/metrics", "/healthz", "/readyz"} {
					if slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(internal, p) }) {
						t.Errorf("Ingress exposes %s", internal)
					}
				}
			}
		})
	}
}

// TestNATSChartValues checks the values given for the NATS chart: a
// JetStream cluster of three on file storage, and the nats-server version
// doraflow is tested with.
func TestNATSChartValues(t *testing.T) {
	vals, err := chartutil.ReadValuesFile(natsValues)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"config.cluster.enabled":             true,
		"config.cluster.replicas":            float64(3),
		"config.jetstream.enabled":           true,
		"config.jetstream.fileStore.enabled": true,
		"container.image.tag":                server.VERSION + "-alpine",
	}
	for _, key := range slices.Sorted(maps.Keys(want)) {
		got, err := vals.PathValue(key)
		if err != nil || !reflect.DeepEqual(normalise(got), want[key]) {
			t.Errorf("%s: %v (%v), want %v", key, got, err, want[key])
		}
	}
	if got, _ := effectiveValues(t, exampleValues).PathValue("nats.replicas"); normalise(got) != float64(3) {
		t.Errorf("%s: nats.replicas %v, want 3 on the 3-node cluster", exampleValues, got)
	}
}

// normalise turns YAML's integers into float64, as JSON would.
func normalise(v any) any {
	switch n := v.(type) {
	case int:
		return float64(n)
	case int64:
		return float64(n)
	}
	return v
}
