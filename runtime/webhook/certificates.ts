import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import forge from 'node-forge';

/** A CA and a serving certificate it signed, as PEM. */
export interface CertificateSet {
  readonly caCert: string;
  readonly caKey: string;
  readonly cert: string;
  readonly key: string;
}

export interface ServingIdentity {
  /** DNS names the serving certificate must carry (Service names). */
  readonly dnsNames: string[];
  /** IP addresses it must carry (tests reach the webhook on 127.0.0.1). */
  readonly ipAddresses: string[];
}

const DAY = 24 * 60 * 60 * 1000;
const CA_DAYS = 3650;
const SERVING_DAYS = 365;

function rsaKey(): { privatePem: string; publicPem: string } {
  // Native key generation; forge only assembles and signs the certificates.
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    privatePem: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

interface CertificateRequest {
  readonly subject: string;
  readonly publicPem: string;
  readonly signerKeyPem: string;
  /** The signing CA; a self-signed certificate without it. */
  readonly issuer?: forge.pki.Certificate;
  readonly days: number;
  readonly isCa: boolean;
  readonly identity?: ServingIdentity;
  readonly now: Date;
}

function certificate(options: CertificateRequest): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(options.publicPem);
  cert.serialNumber = `01${randomBytes(15).toString('hex')}`;
  cert.validity.notBefore = new Date(options.now.getTime() - 5 * 60 * 1000);
  cert.validity.notAfter = new Date(options.now.getTime() + options.days * DAY);
  cert.setSubject([{ name: 'commonName', value: options.subject }]);
  cert.setIssuer((options.issuer ?? cert).subject.attributes);
  const extensions: object[] = options.isCa
    ? [{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true }]
    : [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          ...options.identity!.dnsNames.map((value) => ({ type: 2, value })),
          ...options.identity!.ipAddresses.map((ip) => ({ type: 7, ip })),
        ],
      },
    ];
  cert.setExtensions(extensions);
  cert.sign(forge.pki.privateKeyFromPem(options.signerKeyPem), forge.md.sha256.create());
  return cert;
}

/** A serving certificate for `identity`, signed by the given CA or by a new one. */
export function issueCertificates(identity: ServingIdentity, ca?: { cert: string; key: string }, now = new Date()): CertificateSet {
  let caCert = ca?.cert;
  let caKey = ca?.key;
  if (!caCert || !caKey) {
    const key = rsaKey();
    caKey = key.privatePem;
    caCert = forge.pki.certificateToPem(certificate({ subject: 'cdk8s-oras webhook CA', publicPem: key.publicPem, signerKeyPem: key.privatePem, days: CA_DAYS, isCa: true, now }));
  }
  const serving = rsaKey();
  const cert = certificate({
    subject: identity.dnsNames[0] ?? identity.ipAddresses[0],
    publicPem: serving.publicPem,
    signerKeyPem: caKey,
    issuer: forge.pki.certificateFromPem(caCert),
    days: SERVING_DAYS,
    isCa: false,
    identity,
    now,
  });
  return { caCert, caKey, cert: forge.pki.certificateToPem(cert), key: serving.privatePem };
}

/** Why a stored certificate set cannot serve. */
export enum CertificateReason {
  MISSING = 'missing',
  UNREADABLE = 'unreadable',
  NOT_SIGNED_BY_CA = 'not-signed-by-ca',
  SERVING_EXPIRES = 'serving-expires',
  CA_EXPIRES = 'ca-expires',
  NAMES_MISSING = 'names-missing',
}

/** A stored certificate set that cannot serve: the reason, and whether its CA may sign the next one. */
export class CertificateProblem extends Error {
  public override name = 'CertificateProblem';
  constructor(public readonly reason: CertificateReason, message: string) {
    super(message);
  }

  /** The CA is readable, signed the serving certificate and stays valid: keep it, so that pods of the old caBundle keep trusting us. */
  get caUsable(): boolean {
    return this.reason === CertificateReason.SERVING_EXPIRES || this.reason === CertificateReason.NAMES_MISSING;
  }
}

/**
 * Why a stored certificate set cannot serve `identity` until `until`, or
 * undefined when it can: it must be signed by its CA, cover every name and
 * address, and stay valid (the CA too).
 */
export function problemWith(set: Partial<CertificateSet>, identity: ServingIdentity, until: Date): CertificateProblem | undefined {
  if (!set.caCert || !set.caKey || !set.cert || !set.key) return new CertificateProblem(CertificateReason.MISSING, 'no certificate yet');
  let ca: X509Certificate;
  let cert: X509Certificate;
  try {
    ca = new X509Certificate(set.caCert);
    cert = new X509Certificate(set.cert);
  } catch (err) {
    return new CertificateProblem(CertificateReason.UNREADABLE, `the stored certificates cannot be read (${(err as Error).message})`);
  }
  if (!cert.verify(ca.publicKey)) return new CertificateProblem(CertificateReason.NOT_SIGNED_BY_CA, 'the serving certificate is not signed by the stored CA');
  if (new Date(ca.validTo) <= until) return new CertificateProblem(CertificateReason.CA_EXPIRES, `the CA expires on ${ca.validTo}`);
  if (new Date(cert.validTo) <= until) return new CertificateProblem(CertificateReason.SERVING_EXPIRES, `the serving certificate expires on ${cert.validTo}`);
  const names = cert.subjectAltName ?? '';
  const missing = [...identity.dnsNames.map((n) => `DNS:${n}`), ...identity.ipAddresses.map((ip) => `IP Address:${ip}`)].filter((n) => !names.split(', ').includes(n));
  if (missing.length > 0) return new CertificateProblem(CertificateReason.NAMES_MISSING, `the serving certificate lacks ${missing.join(', ')}`);
  return undefined;
}
