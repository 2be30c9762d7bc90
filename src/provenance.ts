/**
 * Annotations of a pushed step output that say where it came from. A module of its own, without cdk8s,
 * so that the runtime's step commands load none of it at start.
 */
export const PROVENANCE = {
  STEP: 'org.cdk8s-oras.step.name',
  IMAGE: 'org.cdk8s-oras.step.image',
  INPUTS: 'org.cdk8s-oras.step.inputs',
  EXIT_CODE: 'org.cdk8s-oras.step.exit-code',
  /** The workflow and run the output belongs to; retention counts runs by them. */
  WORKFLOW: 'org.cdk8s-oras.workflow',
  RUN_ID: 'org.cdk8s-oras.run-id',
  /** The memoization key (InjectionSettings.memoKey) the output was made or reused for. */
  MEMO_KEY: 'org.cdk8s-oras.step.memo-key',
  /** On a memoized output: `<repository>@<digest>` of the output it reuses. */
  MEMOIZED_FROM: 'org.cdk8s-oras.step.memoized-from',
} as const;
