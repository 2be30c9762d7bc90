/**
 * What the kubelet does to a container's command and args before it starts
 * the container (k8s.io/kubernetes third_party/forked/golang/expansion):
 * `$(NAME)` becomes the value of env var NAME when it is defined, `$$` becomes
 * `$`, and anything else, an unclosed `$(` included, stays as written.
 */
export function kubeletExpand(text: string, env: Record<string, string> = {}): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== '$' || i + 1 >= text.length) {
      out += text[i];
      continue;
    }
    const next = text[i + 1];
    if (next === '$') {
      out += '$';
      i++;
    } else if (next === '(') {
      const close = text.indexOf(')', i + 2);
      if (close < 0) {
        out += text.slice(i);
        break;
      }
      const name = text.slice(i + 2, close);
      out += name in env ? env[name] : `$(${name})`;
      i = close;
    } else {
      out += '$';
    }
  }
  return out;
}
