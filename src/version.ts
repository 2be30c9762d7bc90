/**
 * The package version. The default runtime image is tagged with it, so a
 * library version always pairs with the runtime it was tested with.
 * @internal
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const PACKAGE_VERSION: string = require('../package.json').version;
