// ping-pong: A sends S bytes (in pieces P) to B, B sends S back; measure round trip. mode 0: send, 1: vmsplice+splice
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>
#include <sched.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <vector>
#include <algorithm>
static size_t S = 1<<19, P = 64<<10; static int mode = 0;
static void pin(int c){cpu_set_t s;CPU_ZERO(&s);CPU_SET(c,&s);sched_setaffinity(0,sizeof s,&s);}
static void sendall(int fd, char* buf, int pipefd[2]) {
  for (size_t off=0; off<S; off+=P) {
    size_t n = std::min(P, S-off);
    if (mode!=1) { size_t d=0; while(d<n){ ssize_t r=send(fd,buf+off+d,n-d,(mode==2&&off+n<S)?MSG_MORE:0); if(r<0){perror("send");exit(1);} d+=r;} }
    else {
      size_t d=0; while(d<n){ iovec iov{buf+off+d,n-d}; ssize_t r=vmsplice(pipefd[1],&iov,1,0); if(r<0){perror("vmsplice");exit(1);} 
        ssize_t m=0; while(m<r){ ssize_t q=splice(pipefd[0],nullptr,fd,nullptr,r-m,(off+d+r<S)?SPLICE_F_MORE:0); if(q<0){perror("splice");exit(1);} m+=q;} d+=r;}
    }
  }
}
static void recvall(int fd, char* buf){ size_t d=0; while(d<S){ ssize_t r=recv(fd,buf+d,S-d,0); if(r<=0){perror("recv");exit(1);} d+=r;} }
int main(int argc,char**argv){ mode=atoi(argv[1]); if(argc>2) S=atol(argv[2]); int iters=2000;
  int ls=socket(AF_INET,SOCK_STREAM,0); sockaddr_in a{}; a.sin_family=AF_INET; a.sin_addr.s_addr=htonl(0x7f000001); bind(ls,(sockaddr*)&a,sizeof a); listen(ls,1); socklen_t l=sizeof a; getsockname(ls,(sockaddr*)&a,&l);
  pid_t pid=fork();
  int fd; int one=1;
  if(pid==0){ pin(1); fd=socket(AF_INET,SOCK_STREAM,0); connect(fd,(sockaddr*)&a,sizeof a);} else { pin(0); fd=accept(ls,nullptr,nullptr);} 
  setsockopt(fd,IPPROTO_TCP,TCP_NODELAY,&one,sizeof one);
  int pp[2]; pipe(pp); fcntl(pp[1],F_SETPIPE_SZ,1<<20);
  std::vector<char> sb(S,1), rb(S);
  std::vector<double> t;
  for(int i=0;i<iters;i++){ auto t0=std::chrono::steady_clock::now();
    if(pid==0){ recvall(fd,rb.data()); sendall(fd,sb.data(),pp);} else { sendall(fd,sb.data(),pp); recvall(fd,rb.data()); }
    t.push_back(std::chrono::duration<double,std::micro>(std::chrono::steady_clock::now()-t0).count()); }
  if(pid){ std::sort(t.begin(),t.end()); double m=0; for(double x:t) m+=x; m/=t.size(); printf("mode %d S %zu: median %.1f mean %.1f p10 %.1f p75 %.1f p90 %.1f p99 %.1f\n",mode,S,t[t.size()/2],m,t[t.size()/10],t[t.size()*3/4],t[t.size()*9/10],t[t.size()*99/100]); waitpid(pid,nullptr,0);} 
}
