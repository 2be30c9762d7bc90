import { assertPinnedImage } from './registry';
import { PACKAGE_VERSION } from './version';

/**
 * The image the injected pull, run and push containers, the webhook and the
 * CSI plugin run. It holds the `oras-runtime` program of this package.
 */
export class OrasRuntimeImage {
  /** Repository the project publishes the runtime image to. */
  public static readonly DEFAULT_REPOSITORY = 'ghcr.io/cdk8s-oras/oras-runtime';

  /**
   * `ghcr.io/cdk8s-oras/oras-runtime:<this package's version>`.
   */
  public static default(): OrasRuntimeImage {
    return OrasRuntimeImage.fromRepository(OrasRuntimeImage.DEFAULT_REPOSITORY);
  }

  /**
   * The same version from another repository, such as a mirror:
   * `<repository>:<this package's version>`.
   */
  public static fromRepository(repository: string): OrasRuntimeImage {
    if (repository.includes('@') || repository.lastIndexOf(':') > repository.lastIndexOf('/')) {
      throw new Error(`OrasRuntimeImage.fromRepository("${repository}"): give the repository without tag or digest; the tag is the package version (${PACKAGE_VERSION}). Use OrasRuntimeImage.fromImage for a full reference.`);
    }
    return new OrasRuntimeImage(`${repository}:${PACKAGE_VERSION}`);
  }

  /**
   * A full image reference, pinned by tag or digest. It must contain an
   * `oras-runtime` of the same version as this library.
   */
  public static fromImage(image: string): OrasRuntimeImage {
    return new OrasRuntimeImage(image);
  }

  /** The image reference. */
  public readonly image: string;

  private constructor(image: string) {
    assertPinnedImage(image, 'OrasRuntimeImage');
    this.image = image;
  }
}
