// npm run toolchain: resolves (building once, if needed) every binary, CRD file and csi.proto the tests and the local
// cluster use, and Walle's OCI images, and prints where each came from and how long it took.
import { localImages } from "./images.ts";
import { csiProtoFile, pluginRegistrationProtoFile, resolveBinary, upstreamCrdFiles, type BinaryName } from "./toolchain.ts";

const started = Date.now();
const names: BinaryName[] = [
  "etcd",
  "kube-apiserver",
  "kube-controller-manager",
  "kubelet",
  "kube-scheduler",
  "kube-proxy",
  "registry",
  "restic",
  "rest-server",
  "keda-operator",
  "apiserver_receive_adapter",
  "eventing-controller",
  "eventing-webhook",
  "eventing-mtping",
  "snapshot-controller",
  "csi-snapshotter",
  "csi-provisioner",
  "csi-sanity",
  "coredns",
  "knative-controller",
  "knative-webhook",
  "knative-autoscaler",
  "knative-activator",
  "knative-queue",
  "helm",
];
for (const name of names) console.log(`${name}: ${await resolveBinary(name, (l) => console.log(l))}`);
console.log(`CRD files: ${(await upstreamCrdFiles((l) => console.log(l))).length}`);
console.log(`csi.proto: ${await csiProtoFile((l) => console.log(l))}`);
console.log(`pluginregistration api.proto: ${await pluginRegistrationProtoFile((l) => console.log(l))}`);
for (const [name, image] of Object.entries(await localImages((l) => console.log(l)))) console.log(`${name}: oci:${image.layout}:${image.tag}`);
console.log(`Toolchain ready in ${((Date.now() - started) / 1000).toFixed(1)} s.`);
