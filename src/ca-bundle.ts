import * as kplus from 'cdk8s-plus-27';

/** The default key of a CA bundle: what cert-manager's Secrets and the kube-root-ca.crt ConfigMap use. */
const DEFAULT_KEY = 'ca.crt';

/** Kubernetes allows these characters in ConfigMap and Secret keys. */
const KEY = /^[-._a-zA-Z0-9]{1,253}$/;

/**
 * CA certificates (PEM) that registry clients trust in addition to the
 * system's, from a key of a ConfigMap or a Secret in the pods' namespace:
 * a registry whose certificate a private CA signed then works without
 * `insecure`. The runtime containers mount it and pass it as `--ca-file`.
 */
export class CaBundle {
  /**
   * The certificates in a ConfigMap key.
   *
   * @param key the key that holds the PEM; default `ca.crt`
   */
  public static fromConfigMap(configMap: kplus.IConfigMap, key?: string): CaBundle {
    return new CaBundle(configMap.name, undefined, key ?? DEFAULT_KEY);
  }

  /**
   * The certificates in a Secret key, such as the `ca.crt` of a cert-manager Certificate's Secret.
   *
   * @param key the key that holds the PEM; default `ca.crt`
   */
  public static fromSecret(secret: kplus.ISecret, key?: string): CaBundle {
    return new CaBundle(undefined, secret.name, key ?? DEFAULT_KEY);
  }

  private constructor(
    /** The ConfigMap's name, when the bundle is in a ConfigMap. */
    public readonly configMapName: string | undefined,
    /** The Secret's name, when the bundle is in a Secret. */
    public readonly secretName: string | undefined,
    /** The key that holds the PEM. */
    public readonly key: string,
  ) {
    if (!KEY.test(key)) {
      throw new Error(`CaBundle: the key "${key}" is no ConfigMap or Secret key (letters, digits, "-", "_" and "." only)`);
    }
  }
}
