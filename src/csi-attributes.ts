/**
 * The CSI volume attributes, compatible with the oras CSI driver prototype:
 * the construct writes them, the node plugin reads them.
 * @internal Not part of the jsii API; the runtime imports it directly.
 */
export const CSI_ATTRIBUTE = {
  REFERENCE: 'oras.artifact.reference',
  MEDIA_TYPES: 'oras.artifact.layers.mediatype',
  PLAIN_HTTP: 'oras.options.plainhttp',
  INSECURE: 'oras.options.insecure',
  CONCURRENCY: 'oras.options.concurrency',
  PULL_ALWAYS: 'oras.options.pullalways',
  PULL_POLICY: 'oras.options.pullpolicy',
  POD_NAMESPACE: 'csi.storage.k8s.io/pod.namespace',
} as const;
