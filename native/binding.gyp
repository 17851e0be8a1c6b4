# node-gyp build of the host backend's addon; scripts/build-native.mjs runs it on `npm ci`.
{
  "targets": [
    {
      "target_name": "gmem_host",
      "sources": ["gmem_host.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
      "libraries": ["-lm"]
    }
  ]
}
