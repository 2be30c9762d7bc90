/** Counters of the node plugin in the Prometheus text format. */
export class CsiMetrics {
  public pulls = 0;
  public cacheHits = 0;
  public bytes = 0;
  public pullSeconds = 0;
  public mounts = 0;
  private readonly errors = new Map<string, number>();

  public pulled(bytes: number, seconds: number): void {
    this.pulls++;
    this.bytes += bytes;
    this.pullSeconds += seconds;
  }

  public error(code: string): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }

  public render(cacheBytes: number): string {
    return [
      '# TYPE oras_csi_pulls_total counter', `oras_csi_pulls_total ${this.pulls}`,
      '# TYPE oras_csi_cache_hits_total counter', `oras_csi_cache_hits_total ${this.cacheHits}`,
      '# TYPE oras_csi_pulled_bytes_total counter', `oras_csi_pulled_bytes_total ${this.bytes}`,
      '# TYPE oras_csi_pull_duration_seconds summary', `oras_csi_pull_duration_seconds_sum ${this.pullSeconds}`, `oras_csi_pull_duration_seconds_count ${this.pulls}`,
      '# TYPE oras_csi_errors_total counter', ...[...this.errors].map(([code, n]) => `oras_csi_errors_total{code="${code}"} ${n}`),
      '# TYPE oras_csi_mounts gauge', `oras_csi_mounts ${this.mounts}`,
      '# TYPE oras_csi_cache_bytes gauge', `oras_csi_cache_bytes ${cacheBytes}`,
    ].join('\n') + '\n';
  }
}
