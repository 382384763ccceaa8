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
