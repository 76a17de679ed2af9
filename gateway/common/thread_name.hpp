// Names the calling thread (at most 15 characters, Linux's limit), so that top -H, perf and a debugger
// say which part of the gateway a thread is: the store's writer, a dispatcher worker, the transport loop.
#pragma once

#include <pthread.h>

#include <string>

namespace tayori {

inline void name_this_thread(const std::string& name) { pthread_setname_np(pthread_self(), name.substr(0, 15).c_str()); }

}  // namespace tayori
