const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/** Counters and a latency histogram in the Prometheus text format. */
export class WebhookMetrics {
  private readonly counts = new Map<string, number>();
  private readonly bucketCounts = BUCKETS.map(() => 0);
  private sum = 0;
  private total = 0;

  /** Counts an answered request and records how long the answer took. */
  public observe(outcome: string, seconds: number): void {
    this.count(outcome);
    BUCKETS.forEach((limit, i) => {
      if (seconds <= limit) this.bucketCounts[i]++;
    });
    this.sum += seconds;
    this.total++;
  }

  /** Counts a request that got no answer (the client went away): its duration says nothing about the webhook. */
  public count(outcome: string): void {
    this.counts.set(outcome, (this.counts.get(outcome) ?? 0) + 1);
  }

  public render(): string {
    const lines = [
      '# HELP oras_webhook_requests_total Admission requests by outcome; "aborted" ones ended before their body did.',
      '# TYPE oras_webhook_requests_total counter',
      ...[...this.counts].map(([outcome, n]) => `oras_webhook_requests_total{outcome="${outcome}"} ${n}`),
      '# HELP oras_webhook_request_duration_seconds Time to answer an admission request (aborted requests are not answered).',
      '# TYPE oras_webhook_request_duration_seconds histogram',
      ...BUCKETS.map((limit, i) => `oras_webhook_request_duration_seconds_bucket{le="${limit}"} ${this.bucketCounts[i]}`),
      `oras_webhook_request_duration_seconds_bucket{le="+Inf"} ${this.total}`,
      `oras_webhook_request_duration_seconds_sum ${this.sum}`,
      `oras_webhook_request_duration_seconds_count ${this.total}`,
    ];
    return lines.join('\n') + '\n';
  }
}
