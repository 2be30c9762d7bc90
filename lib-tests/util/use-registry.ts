import { Distribution, DistributionOptions } from './distribution';
import { RegistryClient, RegistryClientOptions } from '../../runtime/oci/registry-client';

export interface RegistryUnderTest {
  registry: Distribution;
  client: RegistryClient;
}

/**
 * Starts a real registry and a client of ours for the enclosing describe
 * block, and stops both after it. Read the fields inside tests and hooks.
 */
export function useRegistry(options: DistributionOptions = {}, clientOptions: RegistryClientOptions = {}): RegistryUnderTest {
  const under = {} as RegistryUnderTest;
  beforeAll(async () => {
    under.registry = await Distribution.start(options);
    under.client = new RegistryClient(under.registry.host, { plainHttp: under.registry.scheme === 'http', ...clientOptions });
  });
  afterAll(async () => {
    under.client?.close();
    await under.registry?.stop();
  });
  return under;
}
