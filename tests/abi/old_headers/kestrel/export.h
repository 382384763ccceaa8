/* FROZEN TEST COPY (tests/abi/old_headers): an older, smaller edition of the public headers,
 * version 0.0 (preview): the 0.1 headers with the last field(s) of every options and info
 * struct removed (and no MoE statistics). Used only by tests/abi/old_client_test.c to prove
 * that a client compiled against older headers runs against today's libkestrel. Never edit
 * it to follow newer headers. */
/* Symbol export for the Kestrel C ABI. Only declarations marked KESTREL_API are visible in the
 * shared library (it is built with -fvisibility=hidden and a version script). */
#ifndef KESTREL_EXPORT_H_
#define KESTREL_EXPORT_H_

#if defined(_WIN32)
#if defined(KESTREL_BUILDING_LIBRARY)
#define KESTREL_API __declspec(dllexport)
#else
#define KESTREL_API __declspec(dllimport)
#endif
#else
#define KESTREL_API __attribute__((visibility("default")))
#endif

#endif /* KESTREL_EXPORT_H_ */
