// Placeholder main job until the device layer lands: proves the package installs and runs.
console.log('daxstore: device layer not built yet');
